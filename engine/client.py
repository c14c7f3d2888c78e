"""The expert's side of the network: open an invitation, prove the password, wait for consent.

`Client(ticket, password=..., name=...).connect()` returns a `Session` once the novice has
accepted; every refusal on the way (unreachable, wrong certificate, wrong password, expired,
revoked, locked, declined, busy) raises `SessionError` with a sentence the expert can read.

`Viewer(session, events).run()` then carries the session: it decodes frames into
`Viewer.framebuffer`, acknowledges each one once decoded (the sharer's flow control depends on
it), asks for a keyframe after a message it cannot decode, measures frame rate, bandwidth and
round trip, and reports everything else to a `ViewerEvents`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass

import numpy as np

from engine.channel import Channel, Link, Session, SessionError, first_to_finish
from engine.codec import CodecError, Decoder, Rect
from engine.identity import client_context, fingerprint
from engine.protocol import (
    NONCE_SIZE,
    AuthChallenge,
    AuthProof,
    AuthResult,
    Buttons,
    Chat,
    ConsentPending,
    ControlDeny,
    ControlGrant,
    ControlPause,
    ControlRequest,
    ControlRevoke,
    Cursor,
    Frame,
    FrameAck,
    Hello,
    Key,
    Message,
    Ping,
    Pointer,
    Pong,
    Reason,
    RefreshRequest,
    Role,
    Scroll,
    SessionStart,
)
from engine.tickets import Address, Ticket, proof

__all__ = ["Client", "SessionError", "Stats", "Viewer", "ViewerEvents"]

log = logging.getLogger(__name__)

# How often the viewer measures the round trip, and over how long rates are averaged.
PING_INTERVAL = 1.0
RATE_WINDOW = 2.0


@dataclass
class Client:
    """One attempt to join the session an invitation offers."""

    ticket: Ticket
    _: KW_ONLY
    password: str | None
    name: str
    connect_timeout: float = 5.0
    handshake_timeout: float = 30.0
    consent_timeout: float = 300.0
    on_consent_pending: Callable[[ConsentPending], None] | None = None

    async def connect(self) -> Session:
        """Reach the sharer, authenticate, and wait for the novice to accept."""
        if self.ticket.password and not self.password:
            raise SessionError("this invitation is protected by a password; ask the novice "
                               "for it and enter it", Reason.WRONG_PASSWORD)
        # scrypt costs about 100 ms: off the event loop.
        key = await asyncio.to_thread(self.ticket.kdf.derive, self.password or "")
        channel = await self._open()
        try:
            return await self._handshake(channel, key)
        except BaseException:
            await channel.close()
            raise

    async def _handshake(self, channel: Channel, key: bytes) -> Session:
        timeout = self.handshake_timeout
        await channel.send(Hello(role=Role.VIEWER, name=self.name, ticket_id=self.ticket.id))
        await channel.expect(Hello, timeout)
        challenge = await channel.expect(AuthChallenge, timeout)
        if len(challenge.nonce) != NONCE_SIZE:
            raise SessionError("the sharer sent a malformed challenge", Reason.PROTOCOL_ERROR)
        await channel.send(AuthProof(proof=proof(key, challenge.nonce, self.ticket.id)))
        result = await channel.expect(AuthResult, timeout)
        if not result.ok:
            raise SessionError(result.reason or "the sharer refused the invitation", result.code)
        while True:
            message = await channel.receive(self.consent_timeout)
            if isinstance(message, SessionStart):
                return Session(channel, message)
            if isinstance(message, ConsentPending) and self.on_consent_pending is not None:
                self.on_consent_pending(message)

    async def _open(self) -> Channel:
        """A TLS connection to the first candidate address whose certificate is the pinned one.

        The fingerprint is compared right after the TLS handshake, before this side sends a
        single byte of its own: a server that is not the novice's never sees the hello.
        """
        context = client_context()
        problems: list[str] = []
        impostors: list[Address] = []
        for address in self.ticket.addresses:
            try:
                transport, link = await asyncio.wait_for(
                    asyncio.get_running_loop().create_connection(
                        lambda: Link(Role.VIEWER), address.host, address.port, ssl=context,
                        ssl_handshake_timeout=self.connect_timeout),
                    self.connect_timeout)
            except ssl.SSLError as exc:
                problems.append(f"{address} does not speak TLS 1.3 ({exc.reason or exc})")
                continue
            except (OSError, asyncio.TimeoutError) as exc:
                problems.append(f"{address}: {_describe(exc)}")
                continue
            certificate = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            if certificate is None or fingerprint(certificate) != self.ticket.fingerprint:
                impostors.append(address)
                transport.close()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(link.closed(), self.connect_timeout)
                continue
            return Channel(link)
        if impostors:
            raise SessionError(
                f"the computer at {', '.join(map(str, impostors))} is not the one that made "
                "this invitation (its certificate fingerprint differs), so nothing was sent to "
                "it; ask the novice for a new invitation", Reason.PROTOCOL_ERROR)
        raise SessionError(
            f"could not reach {self.ticket.name}'s computer ({'; '.join(problems)}); check "
            "that ra-share is running there and that the network lets you through",
            Reason.ENDED)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionError):
        return "the connection was dropped"
    return str(getattr(exc, "strerror", None) or exc)


@dataclass(frozen=True, slots=True)
class Stats:
    """What the status bar shows: decoded frames per second, kbit/s, round trip (ms)."""

    fps: float
    kbit_s: float
    latency_ms: float | None


class ViewerEvents:
    """What a viewer shows; override what you need. Called on the event loop's thread."""

    def resized(self, width: int, height: int) -> None:
        """`Viewer.framebuffer` is a new array of this size."""

    def frame(self, rects: list[Rect]) -> None:
        """The framebuffer changed inside `rects`."""

    def cursor(self, cursor: Cursor) -> None:
        """The remote pointer moved (`pixels` is b"" when its shape did not change)."""

    def chat(self, message: Chat) -> None:
        """A chat line from the novice."""

    def control(self, granted: bool, reason: str) -> None:
        """Control was granted, denied or taken back."""

    def paused(self, reason: str, seconds: float) -> None:
        """The novice is using the desktop: input is dropped for about `seconds`."""

    def ended(self, error: SessionError) -> None:
        """The session is over; `error.reason` says why."""


class Viewer:
    """One live session on the expert's side."""

    def __init__(self, session: Session, events: ViewerEvents | None = None) -> None:
        self.session = session
        self.events = events or ViewerEvents()
        self.decoder = Decoder()
        self.controlling = False
        self.frames = 0
        self.bytes = 0
        self._arrivals: deque[tuple[float, int]] = deque()
        self._round_trip: float | None = None
        self._refresh_asked = False

    @property
    def framebuffer(self) -> np.ndarray | None:
        """(H, W, 4) BGRX, updated in place until a resize replaces it; None before a frame."""
        return self.decoder.framebuffer

    @property
    def stats(self) -> Stats:
        now = time.monotonic()
        while self._arrivals and self._arrivals[0][0] < now - RATE_WINDOW:
            self._arrivals.popleft()
        frames = len(self._arrivals)
        size = sum(n for _, n in self._arrivals)
        return Stats(fps=frames / RATE_WINDOW, kbit_s=size * 8 / 1000 / RATE_WINDOW,
                     latency_ms=None if self._round_trip is None else self._round_trip * 1000)

    async def run(self) -> SessionError:
        """Carry the session until it ends; the error that says how it ended.

        Reading (TLS) and decoding run side by side: the next frame is read off the socket
        while the previous one decodes on a worker thread (the codec releases the GIL).
        """
        frames: asyncio.Queue[Frame] = asyncio.Queue(maxsize=2)
        try:
            await first_to_finish(self._receive(frames), self._decode_all(frames), self._ping())
        except SessionError as exc:
            ended = exc
        else:  # pragma: no cover - the three loops only end by raising
            ended = SessionError("the session ended")
        self.controlling = False
        self.events.ended(ended)
        return ended

    async def _receive(self, frames: asyncio.Queue[Frame]) -> None:
        while True:
            message = await self.session.next_message()
            if isinstance(message, Frame):
                await frames.put(message)
            else:
                self._handle(message)

    def _handle(self, message: Message) -> None:
        if isinstance(message, Cursor):
            self.events.cursor(message)
        elif isinstance(message, Pong):
            self._round_trip = time.monotonic() - message.token / 1e9
        elif isinstance(message, Chat):
            self.events.chat(message)
        elif isinstance(message, ControlGrant):
            self.controlling = True
            self.events.control(True, f"{self.session.start.sharer_name} gave you control")
        elif isinstance(message, ControlPause):
            self.events.paused(message.reason, message.seconds)
        elif isinstance(message, ControlDeny | ControlRevoke):
            self.controlling = False
            self.events.control(False, message.reason)

    async def _decode_all(self, frames: asyncio.Queue[Frame]) -> None:
        while True:
            message = await frames.get()
            before = self.decoder.framebuffer
            try:
                rects = await asyncio.to_thread(self.decoder.decode, message.data)
            except CodecError as exc:
                # The framebuffer is as it was; a keyframe puts it right (asked for once).
                log.warning("frame %d does not decode: %s", message.seq, exc)
                if not self._refresh_asked:
                    self._refresh_asked = True
                    await self.session.send(RefreshRequest())
                rects = []
            else:
                self._refresh_asked = False
            # Acknowledged either way: the sharer's window must not stall on a frame we dropped.
            await self.session.send(FrameAck(seq=message.seq))
            self.frames += 1
            self.bytes += len(message.data)
            self._arrivals.append((time.monotonic(), len(message.data)))
            fb = self.decoder.framebuffer
            if fb is not None and fb is not before:
                height, width = fb.shape[:2]
                self.events.resized(width, height)
            if rects:
                self.events.frame(rects)

    async def _ping(self) -> None:
        while True:
            await self.session.send(Ping(token=time.monotonic_ns()))
            await asyncio.sleep(PING_INTERVAL)

    async def send_chat(self, text: str) -> Chat:
        line = Chat(sender=self.session.start.viewer_name, text=text, time=time.time())
        await self.session.send(line)
        return line

    async def request_control(self) -> None:
        await self.session.send(ControlRequest())

    async def release_control(self) -> None:
        self.controlling = False
        await self.session.send(ControlRevoke(reason=f"{self.session.start.viewer_name} "
                                                     "gave control back"))

    async def pointer(self, x: int, y: int, buttons: Buttons = Buttons.NONE) -> None:
        if self.controlling:
            await self.session.send(Pointer(x=x, y=y, buttons=buttons))

    async def key(self, keysym: int, down: bool) -> None:
        if self.controlling:
            await self.session.send(Key(keysym=keysym, down=down))

    async def scroll(self, dx: int, dy: int) -> None:
        if self.controlling:
            await self.session.send(Scroll(dx=dx, dy=dy))

    async def close(self) -> None:
        await self.session.close(reason=f"{self.session.start.viewer_name} left the session")
