"""The protocol over an asyncio transport: the one piece of I/O glue sharer and client share.

`Link` is the transport's protocol object: TLS decrypts straight into the buffers a sans-I/O
`Connection` offers (asyncio's `BufferedProtocol`), so a frame of several megabytes is not
copied through stream buffers on its way in, and writes wait while the transport's buffer is
full. `Channel` speaks the protocol over a link. Whatever ends a connection (the peer's Bye or
Error, a protocol error, a lost connection, a timeout) surfaces as one exception,
`SessionError`, whose `reason` is a sentence for people and whose `code` a program can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
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

__all__ = ["Channel", "Link", "Session", "SessionError", "first_to_finish"]

log = logging.getLogger(__name__)

# Bytes of small messages a link holds, unread, before it stops reading the socket (a large
# message has its own buffer, allocated once within the protocol's cap).
READ_LIMIT = 4 * 1024 * 1024
# How long a polite close may wait for the peer to take its Bye.
CLOSE_TIMEOUT = 2.0

M = TypeVar("M")


class SessionError(Exception):
    """A connection was refused or ended. `reason` says why, for people; `code` for programs."""

    def __init__(self, reason: str, code: Reason = Reason.ENDED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Link(asyncio.BufferedProtocol):
    """One transport's protocol object: bytes in, into the connection; flow control out.

    `on_connected` is called with the link once the transport is up (after the TLS
    handshake): a server starts serving the connection there.
    """

    def __init__(self, role: Role,
                 on_connected: Callable[[Link], object] | None = None) -> None:
        self.connection = Connection(role)
        self.transport: asyncio.Transport | None = None
        self._on_connected = on_connected
        self._arrived = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._lost = asyncio.get_running_loop().create_future()
        self._paused = False
        self._ended = False
        self.error: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._on_connected is not None:
            self._on_connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._ended:
            # TLS asks for room before it finds the stream's end, and may ask again after.
            return memoryview(bytearray(max(1, min(sizehint, 65536))))
        return self.connection.receive_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self._ended:
            return
        self.connection.received(nbytes)
        self._arrived.set()
        if self.connection.buffered > READ_LIMIT and self.transport is not None:
            # The reader is behind: let TCP push back instead of buffering without end.
            self.transport.pause_reading()
            self._paused = True

    def eof_received(self) -> bool:
        self._end()
        return False  # close the transport: a half-open connection is of no use

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("connection lost: %s", exc)
        self.error = exc
        self._end()
        self._writable.set()
        if not self._lost.done():
            self._lost.set_result(None)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self.connection.receive_data(b"")
        self._arrived.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def more(self) -> None:
        """Until more bytes, or the end of the stream, arrive."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        self._arrived.clear()
        await self._arrived.wait()

    async def drain(self) -> None:
        """Until the transport takes more; OSError once the connection is lost."""
        await self._writable.wait()
        if self._lost.done():
            raise ConnectionResetError(str(self.error or "the connection is closed"))

    async def closed(self) -> None:
        await asyncio.shield(self._lost)


class Channel:
    """One protocol connection over one link."""

    def __init__(self, link: Link) -> None:
        assert link.transport is not None, "a channel needs a connected link"
        self.connection = link.connection
        self._link = link
        self._transport = link.transport
        peer = self._transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unknown peer"

    @property
    def state(self) -> State:
        return self.connection.state

    @property
    def transport(self) -> asyncio.Transport:
        return self._transport

    async def send(self, message: Message) -> None:
        parts = self.connection.send_parts(message)
        try:
            if self._transport.is_closing():
                raise ConnectionResetError("the connection is closed")
            self._transport.writelines(parts)
            await self._link.drain()
        except OSError as exc:  # ConnectionError and ssl.SSLError included
            raise SessionError(f"the connection was lost ({exc})", Reason.ENDED) from None

    def post(self, message: Message) -> None:
        """Send without waiting for the transport to drain: for small messages that must leave
        in order from code that cannot wait (control answers). A lost connection shows at the
        next read."""
        parts = self.connection.send_parts(message)
        if not self._transport.is_closing():
            self._transport.writelines(parts)

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
                await self._link.more()
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
        self._transport.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._link.closed(), CLOSE_TIMEOUT)


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
