"""The remote-assist wire protocol, sans I/O: messages, their bytes, the connection state.

`engine.sharer` and `engine.client` move the bytes; nothing in this package touches a socket.
"""

from __future__ import annotations

from engine.protocol.connection import (
    NEED_DATA,
    Connection,
    ConnectionClosed,
    Event,
    NeedData,
)
from engine.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from engine.protocol.messages import *  # noqa: F403 - the messages are the package's API
from engine.protocol.messages import __all__ as _messages
from engine.protocol.state import State

__all__ = [
    "NEED_DATA",
    "Connection",
    "ConnectionClosed",
    "Event",
    "LocalProtocolError",
    "NeedData",
    "ProtocolError",
    "RemoteProtocolError",
    "State",
    *_messages,
]
