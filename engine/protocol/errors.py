"""The two directions a protocol error can come from (as in h11)."""

from __future__ import annotations

from engine.protocol.messages import Reason

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """A message that breaks the protocol. `code` is what to tell the peer in `Error`."""

    def __init__(self, message: str, *, code: Reason = Reason.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow: a bug on this side."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or a message the protocol does not allow."""
