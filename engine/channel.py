"""The protocol over an asyncio stream: the one piece of I/O glue the sharer and client share.

`Channel` feeds a sans-I/O `Connection` from a `StreamReader` and writes what it returns.
Whatever ends a connection (the peer's Bye or Error, a protocol error, a lost connection, a
timeout) surfaces as one exception, `SessionError`, whose `reason` is a sentence for people
and whose `code` a program can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar

from engine.protocol import (
    Bye,
    Connection,
    ConnectionClosed,
    Error,
    LocalProtocolError,
    Message,
    NeedData,
    Reason,
    RemoteProtocolError,
    Role,
    SessionStart,
    State,
)

__all__ = ["STREAM_LIMIT", "Channel", "Session", "SessionError", "first_to_finish"]

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
# How much a stream buffers before it stops reading the socket. A whole-screen frame is
# megabytes: at asyncio's default of 64 KiB the transport pauses and resumes many times a
# frame, each time through the selector.
STREAM_LIMIT = 4 * 1024 * 1024
# How long a polite close may wait for the peer to take its Bye.
CLOSE_TIMEOUT = 2.0

M = TypeVar("M")


class SessionError(Exception):
    """A connection was refused or ended. `reason` says why, for people; `code` for programs."""

    def __init__(self, reason: str, code: Reason = Reason.ENDED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Channel:
    """One protocol connection over one asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 role: Role) -> None:
        self.connection = Connection(role)
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unknown peer"

    @property
    def state(self) -> State:
        return self.connection.state

    async def send(self, message: Message) -> None:
        data = self.connection.send(message)
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:  # ConnectionError and ssl.SSLError included
            raise SessionError(f"the connection was lost ({exc})", Reason.ENDED) from None

    def post(self, message: Message) -> None:
        """Send without waiting for the transport to drain: for small messages that must leave
        in order from code that cannot wait (control answers). A lost connection shows at the
        next read."""
        data = self.connection.send(message)
        if not self._writer.is_closing():
            self._writer.write(data)

    async def receive(self, timeout: float | None = None) -> Message:
        """The peer's next message. Its Bye or Error, and every failure, raise SessionError."""
        try:
            return await asyncio.wait_for(self._receive(), timeout)
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            await self.close(code=Reason.TIMEOUT, reason="no answer in time")
            raise SessionError(f"the other side did not answer within {timeout:.0f} seconds",
                               Reason.TIMEOUT) from None

    async def expect(self, kind: type[M], timeout: float | None = None) -> M:
        """The next message, which must be a `kind` (the state table allows nothing else)."""
        message = await self.receive(timeout)
        if not isinstance(message, kind):
            await self.close(code=Reason.PROTOCOL_ERROR, reason=f"expected {kind.__name__}")
            raise SessionError(f"the other side sent {type(message).__name__} where "
                               f"{kind.__name__} was due", Reason.PROTOCOL_ERROR)
        return message

    async def _receive(self) -> Message:
        while True:
            try:
                event = self.connection.next_event()
            except RemoteProtocolError as exc:
                await self._send_error(exc.code, str(exc))
                raise SessionError(f"the other side broke the protocol: {exc}",
                                   exc.code) from None
            if isinstance(event, NeedData):
                try:
                    data = await self._reader.read(READ_SIZE)
                except OSError as exc:  # ConnectionError and ssl.SSLError included
                    data = b""
                    log.debug("%s: read failed: %s", self.peer, exc)
                self.connection.receive_data(data)
            elif isinstance(event, ConnectionClosed):
                raise SessionError("the other side closed the connection", Reason.ENDED)
            elif isinstance(event, Bye):
                raise SessionError(event.reason or "the other side ended the session", event.code)
            elif isinstance(event, Error):
                raise SessionError(f"the other side reported an error: {event.reason}",
                                   event.code)
            else:
                return event

    async def _send_error(self, code: Reason, reason: str) -> None:
        with contextlib.suppress(LocalProtocolError, SessionError):
            await self.send(Error(code=code, reason=reason))
        await self.close()

    async def close(self, *, code: Reason = Reason.ENDED, reason: str = "") -> None:
        """Say Bye if the protocol still allows it, then close the stream."""
        if self.state is not State.CLOSED:
            with contextlib.suppress(LocalProtocolError, SessionError):
                await self.send(Bye(code=code, reason=reason))
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT)


class Session:
    """A session both sides agreed to (after SessionStart), on either side."""

    def __init__(self, channel: Channel, start: SessionStart) -> None:
        self.channel = channel
        self.start = start

    @property
    def peer(self) -> str:
        return self.channel.peer

    async def send(self, message: Message) -> None:
        await self.channel.send(message)

    def post(self, message: Message) -> None:
        self.channel.post(message)

    async def next_message(self, timeout: float | None = None) -> Message:
        """The peer's next message; SessionError when the session ends, with why."""
        return await self.channel.receive(timeout)

    async def close(self, *, code: Reason = Reason.ENDED, reason: str = "") -> None:
        await self.channel.close(code=code, reason=reason)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def first_to_finish(*coroutines: Awaitable[None]) -> None:
    """Run side by side until one returns or raises; cancel the rest; re-raise its error."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
