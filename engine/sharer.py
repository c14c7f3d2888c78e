"""The novice's side of the network: a TLS server that lets one expert in at a time.

Per connection, in this order, and nothing of the session before the end of it:

1. TLS 1.3 with this user's identity (a client that does not speak it never reaches step 2);
2. the viewer's Hello names an invitation; the sharer answers Hello and a fresh nonce;
3. the viewer's proof is checked against the store (`InvitationStore.verify`), which counts a
   wrong password, locks on the fifth, and refuses expired, revoked, locked or unknown
   invitations: the reason goes back in AuthResult and the connection ends;
4. one expert at a time: a second one who authenticates meanwhile is told so and let go;
5. ConsentPending, then the novice is asked (`SharerEvents.consent`); a no, no answer in
   time, or the expert hanging up ends it;
6. SessionStart, then `run_session` carries the session until either side ends it: the screen
   (`engine.streamer`), chat both ways, and the round-trip pings the viewer measures with.

What the novice sees and answers goes through `SharerEvents`: the terminal (`engine.cli`) and
the novice panel (`viewer.novice`) each implement it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.capture import CaptureError, FrameSource
from engine.channel import Channel, Link, Session, SessionError, first_to_finish
from engine.handover import Handover, HandoverListener
from engine.identity import Identity
from engine.invitations import InvitationRefused, InvitationStore
from engine.protocol import (
    NONCE_SIZE,
    AuthChallenge,
    AuthProof,
    AuthResult,
    Chat,
    ConsentPending,
    ControlRequest,
    ControlRevoke,
    FrameAck,
    Hello,
    Key,
    Message,
    Permission,
    Ping,
    Pointer,
    Pong,
    Reason,
    RefreshRequest,
    Role,
    Scroll,
    SessionStart,
)
from engine.streamer import (
    DEFAULT_MAX_FPS,
    CaptureThread,
    Streamer,
    capture_failure,
)

__all__ = ["DEFAULT_PORT", "ConsentRequest", "Sharer", "SharerEvents"]

log = logging.getLogger(__name__)

# Beside VNC's 5900 range, which a machine offering remote help may well use already.
DEFAULT_PORT = 5950
MAX_VIEWER_NAME = 64


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsentRequest:
    """What the novice sees when asked to let an expert in."""

    viewer_name: str
    session_code: str
    ticket_id: bytes
    permissions: Permission
    peer: str


class SharerEvents(HandoverListener):
    """What the sharer asks the novice and tells them; override what a front end shows.

    The defaults answer no and show nothing, so a front end that forgets a question refuses.
    `control_requested` and `control` (from `HandoverListener`) are about taking control.
    """

    async def consent(self, request: ConsentRequest) -> bool:
        """May this expert see the screen?"""
        return False

    def session_started(self, start: SessionStart) -> None:
        """The expert is watching."""

    def session_ended(self, reason: str) -> None:
        """The session is over (either side ended it, or the connection dropped)."""

    def chat(self, message: Chat) -> None:
        """A chat line from the expert (its sender is the name the novice accepted)."""

    def notice(self, text: str) -> None:
        """Something else the novice should know."""


def new_session_code() -> str:
    """Six digits both screens show, so the novice can tell the right expert is on the line."""
    digits = f"{secrets.randbelow(10**6):06d}"
    return f"{digits[:3]} {digits[3:]}"


def display_name(name: str) -> str:
    """The expert's self-chosen name, made safe to show in a prompt."""
    shown = "".join(c for c in name if c.isprintable()).strip()[:MAX_VIEWER_NAME]
    return shown or "an unnamed expert"


class Sharer:
    """Serves invitations from `store` under `identity`; asks `consent` before each session."""

    def __init__(
        self,
        *,
        identity: Identity,
        store: InvitationStore,
        name: str,
        events: SharerEvents,
        source: Callable[[], FrameSource] | None = None,
        display: str | None = None,
        max_fps: float = DEFAULT_MAX_FPS,
        grace: float | None = None,
        handshake_timeout: float = 30.0,
        consent_timeout: float = 120.0,
    ) -> None:
        """`source` opens what is shared (on the capture thread); None shares no screen.

        `display` is the X display the expert's input goes to while they have control (None:
        control is never granted); `grace` how long the novice's own input pauses theirs.
        """
        self.identity = identity
        self.store = store
        self.name = name
        self.events = events
        self.max_fps = max_fps
        self.display = display
        self.grace = grace
        self.handshake_timeout = handshake_timeout
        self.consent_timeout = consent_timeout
        self.active: Channel | None = None
        self.session: Session | None = None
        self.streamer: Streamer | None = None
        self.handover: Handover | None = None
        self._capture = CaptureThread(source) if source is not None else None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str | Sequence[str] | None = None,
                    port: int = DEFAULT_PORT) -> None:
        """Listen (on every interface when `host` is None) and serve in the background."""
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Link(Role.SHARER, on_connected=self._connected), host, port,
            ssl=self.identity.server_context(), ssl_handshake_timeout=self.handshake_timeout)

    @property
    def port(self) -> int:
        """The port listened on (useful after starting on port 0)."""
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def serve(self, host: str | Sequence[str] | None = None,
                    port: int = DEFAULT_PORT) -> None:
        """Listen and serve until cancelled."""
        await self.start(host, port)
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening and end every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._capture is not None:
            await self._capture.close()

    def _connected(self, link: Link) -> None:
        """A connection came in and its TLS handshake succeeded: serve it in a task."""
        task = asyncio.ensure_future(self._accept(Channel(link)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, channel: Channel) -> None:
        # What the expert is told when the connection ends, unless something says otherwise.
        code, reason = Reason.ENDED, f"{self.name} stopped sharing"
        try:
            session = await self._handshake(channel)
            log.info("%s: session %s started", channel.peer, session.start.session_code)
            await self.run_session(session)
        except SessionError as exc:
            log.info("%s: connection over: %s", channel.peer, exc.reason)
            code, reason = exc.code, exc.reason
        except Exception:
            log.exception("%s: connection failed", channel.peer)
            code, reason = Reason.INTERNAL_ERROR, f"{self.name}'s computer ran into an error"
        finally:
            if self.active is channel:
                self.active = None
            await channel.close(code=code, reason=reason)

    async def _handshake(self, channel: Channel) -> Session:
        hello = await channel.expect(Hello, self.handshake_timeout)
        await channel.send(Hello(role=Role.SHARER, name=self.name))
        nonce = secrets.token_bytes(NONCE_SIZE)
        await channel.send(AuthChallenge(nonce=nonce))
        answer = await channel.expect(AuthProof, self.handshake_timeout)
        try:
            # SQLite may wait on another ra-share process: keep the loop free meanwhile.
            invitation = await asyncio.to_thread(
                self.store.verify, hello.ticket_id, nonce, answer.proof)
        except InvitationRefused as refusal:
            await channel.send(AuthResult(code=refusal.code, reason=refusal.reason))
            raise SessionError(refusal.reason, refusal.code) from None
        await channel.send(AuthResult())
        if self.active is not None:
            raise SessionError(f"{self.name} is already being helped by another expert; "
                               "try again later", Reason.BUSY)
        self.active = channel
        request = ConsentRequest(
            viewer_name=display_name(hello.name), session_code=new_session_code(),
            ticket_id=invitation.id, permissions=invitation.permissions, peer=channel.peer)
        await channel.send(ConsentPending(session_code=request.session_code))
        if not await self._ask(channel, request):
            raise SessionError(f"{self.name} declined the connection", Reason.DECLINED)
        start = SessionStart(session_code=request.session_code, sharer_name=self.name,
                             viewer_name=request.viewer_name, permissions=request.permissions)
        await channel.send(start)
        return Session(channel, start)

    async def _ask(self, channel: Channel, request: ConsentRequest) -> bool:
        """The novice's answer; the expert hanging up meanwhile withdraws the question."""
        answer = asyncio.ensure_future(self.events.consent(request))
        # In this state the viewer may only leave (Bye, Error, or closing): that ends the wait.
        hangup = asyncio.ensure_future(channel.receive())
        try:
            done, _ = await asyncio.wait({answer, hangup}, timeout=self.consent_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (answer, hangup):
                task.cancel()
            # Let the cancelled read finish before anyone reads the stream again.
            await asyncio.wait({answer, hangup})
        if hangup in done:
            hangup.result()  # raises the SessionError that says how the expert left
        if answer not in done:
            raise SessionError(f"{self.name} did not answer within "
                               f"{self.consent_timeout:.0f} seconds", Reason.TIMEOUT)
        return bool(answer.result())

    async def run_session(self, session: Session) -> None:
        """The session after SessionStart, until either side ends it."""
        self.session = session
        start = session.start
        handover = self.handover = Handover(
            permissions=start.permissions, viewer_name=start.viewer_name,
            sharer_name=self.name, display=self.display, post=session.post,
            listener=self.events, grace=self.grace)
        self.events.session_started(start)
        streamer = self.streamer = (
            Streamer(session.send, self._capture, max_fps=self.max_fps)
            if self._capture is not None else None)
        reason = "the session ended"
        try:
            if streamer is None:
                await self._read(session, streamer, handover)
            else:
                await first_to_finish(self._read(session, streamer, handover), streamer.run())
        except SessionError as exc:
            reason = exc.reason
            raise
        except CaptureError as exc:
            code, reason = capture_failure(exc, self.name)
            self.events.notice(f"Your screen cannot be shared any more: {exc}")
            raise SessionError(reason, code) from None
        finally:
            handover.end()
            self.session = self.streamer = self.handover = None
            self.events.session_ended(reason)

    async def _read(self, session: Session, streamer: Streamer | None,
                    handover: Handover) -> None:
        """Everything the viewer sends, in order, until the session ends."""
        while True:
            message = await session.next_message()
            await self._dispatch(session, streamer, handover, message)

    async def _dispatch(self, session: Session, streamer: Streamer | None, handover: Handover,
                        message: Message) -> None:
        if isinstance(message, FrameAck):
            if streamer is None or not streamer.acked(message.seq):
                raise SessionError(f"the viewer acknowledged frame {message.seq}, which was "
                                   "never sent", Reason.PROTOCOL_ERROR)
        elif isinstance(message, Ping):
            await session.send(Pong(token=message.token))
        elif isinstance(message, RefreshRequest):
            if streamer is not None:
                streamer.refresh()
        elif isinstance(message, Chat):
            # The sender is the name the novice accepted, whatever the message claims.
            self.events.chat(Chat(sender=handover.viewer_name, text=message.text,
                                  time=time.time()))
        elif isinstance(message, Pointer | Key | Scroll):
            handover.expert_input(message)
        elif isinstance(message, ControlRequest):
            handover.expert_requests()
        elif isinstance(message, ControlRevoke):
            handover.expert_releases()

    async def send_chat(self, text: str) -> Chat | None:
        """Say something to the expert; the line as sent, or None when nobody is connected."""
        session = self.session
        if session is None:
            return None
        line = Chat(sender=self.name, text=text, time=time.time())
        await session.send(line)
        return line

    def stop_control(self, reason: str | None = None) -> None:
        """The novice takes control back (Stop Control); the session goes on, view-only."""
        if self.handover is not None:
            self.handover.novice_stops(reason or f"{self.name} pressed Stop Control")

    async def end_session(self) -> None:
        """End the current session for good (the expert must connect again to come back)."""
        channel = self.active
        if channel is not None:
            await channel.close(code=Reason.ENDED, reason=f"{self.name} ended the session")
