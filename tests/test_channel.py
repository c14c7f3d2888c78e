"""The secure channel over real TLS on 127.0.0.1: each refusal as the expert reads it, and
what the store makes of it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import stat
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import invitation, run, until

from engine.channel import READ_LIMIT, Link, Session, SessionError
from engine.client import Client
from engine.identity import Identity, IdentityError, client_context
from engine.invitations import MAX_FAILED_ATTEMPTS, InvitationState, InvitationStore
from engine.protocol import (
    AuthChallenge,
    AuthProof,
    AuthResult,
    Bye,
    Chat,
    ConsentPending,
    Error,
    Frame,
    Hello,
    Message,
    Permission,
    Reason,
    Role,
    SessionStart,
    wire,
)
from engine.protocol.connection import ROOM_SIZE
from engine.sharer import ConsentRequest, Sharer, SharerEvents
from engine.tickets import Ticket, proof

T = TypeVar("T")


class Novice(SharerEvents):
    """The novice's answers: records each request and answers, now or when released."""

    def __init__(self, answer: bool = True, *, wait: bool = False) -> None:
        self.answer = answer
        self.wait = wait
        self.requests: list[ConsentRequest] = []
        self.asked = asyncio.Event()
        self.release = asyncio.Event()
        self.withdrawn = asyncio.Event()

    async def consent(self, request: ConsentRequest) -> bool:
        self.requests.append(request)
        self.asked.set()
        try:
            if self.wait:
                await self.release.wait()
        except asyncio.CancelledError:
            self.withdrawn.set()
            raise
        return self.answer


class Streaming(Sharer):
    """A sharer that sends a frame and a chat line the moment a session starts, then echoes."""

    async def run_session(self, session: Session) -> None:
        await session.send(Frame(seq=1, data=b"pixels"))
        await session.send(Chat(sender=self.name, text="hello", time=1.0))
        while True:
            message = await session.next_message()
            if isinstance(message, Chat):
                await session.send(Chat(sender=self.name, text=f"echo {message.text}",
                                        time=2.0))


@contextlib.asynccontextmanager
async def sharing(store: InvitationStore, identity: Identity, consent: Novice,
                  kind: type[Sharer] = Sharer, **options: Any) -> AsyncIterator[Sharer]:
    sharer = kind(identity=identity, store=store, name="Alice", events=consent, **options)
    await sharer.start("127.0.0.1", 0)
    try:
        yield sharer
    finally:
        await sharer.close()


async def join(ticket: Ticket, password: str | None = "pw", **options: Any) -> Session:
    return await Client(ticket, password=password, name="Bob", **options).connect()


async def refusal(ticket: Ticket, password: str | None = "pw", **options: Any) -> SessionError:
    with pytest.raises(SessionError) as error:
        await join(ticket, password, **options)
    reason = error.value.reason
    assert reason and "\n" not in reason and "Traceback" not in reason
    return error.value


def messages_in(data: bytes) -> list[Message]:
    """Every message in a byte stream, read off the wire format alone (no state machine)."""
    found = []
    while data:
        length, wire_type = wire.HEADER.unpack_from(data)
        found.append(wire.decode_body(wire_type, memoryview(data)[5:4 + length]))
        data = data[4 + length:]
    return found


class RawViewer:
    """A viewer driven by hand over real TLS (no state machine), keeping every byte received."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received = b""
        self.closed = False

    @classmethod
    async def open(cls, port: int) -> RawViewer:
        return cls(*await asyncio.open_connection("127.0.0.1", port, ssl=client_context()))

    async def send(self, message: Message) -> None:
        self.writer.write(wire.encode(message))
        await self.writer.drain()

    async def read_for(self, seconds: float) -> None:
        """Everything that arrives within `seconds`, or until the sharer closes."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._read_to_end(), seconds)

    async def _read_to_end(self) -> None:
        while chunk := await self.reader.read(65536):
            self.received += chunk
        self.closed = True

    async def read_until(self, kind: type[Any]) -> Any:
        while not any(isinstance(m, kind) for m in self.messages()):
            chunk = await asyncio.wait_for(self.reader.read(65536), 10)
            assert chunk, f"closed before {kind.__name__}: {self.messages()}"
            self.received += chunk
        return next(m for m in self.messages() if isinstance(m, kind))

    def messages(self) -> list[Message]:
        return messages_in(self.received)

    def kinds(self) -> list[type[Any]]:
        return [type(m) for m in self.messages()]

    async def authenticate(self, ticket: Ticket, password: str) -> None:
        await self.send(Hello(role=Role.VIEWER, name="Bob", ticket_id=ticket.id))
        challenge = await self.read_until(AuthChallenge)
        key = ticket.kdf.derive(password)
        await self.send(AuthProof(proof=proof(key, challenge.nonce, ticket.id)))

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------- a session that starts


def test_a_session_starts_after_consent_and_carries_messages(store, identity):
    async def scenario() -> None:
        novice = Novice()
        pending: list[ConsentPending] = []
        async with sharing(store, identity, novice, Streaming) as sharer:
            ticket = invitation(store, identity, sharer.port)
            session = await join(ticket, on_consent_pending=pending.append)
            (request,) = novice.requests
            assert request.viewer_name == "Bob"
            assert request.ticket_id == ticket.id
            assert request.permissions == Permission.VIEW | Permission.CONTROL
            assert session.start == SessionStart(
                session_code=request.session_code, sharer_name="Alice", viewer_name="Bob",
                permissions=Permission.VIEW | Permission.CONTROL)
            assert pending == [ConsentPending(session_code=request.session_code)]
            assert len(request.session_code.replace(" ", "")) == 6
            assert await session.next_message() == Frame(seq=1, data=b"pixels")
            assert await session.next_message() == Chat(sender="Alice", text="hello", time=1.0)
            await session.send(Chat(sender="Bob", text="hi", time=1.5))
            assert await session.next_message() == Chat(sender="Alice", text="echo hi",
                                                        time=2.0)
            await session.close(reason="done")
        assert store.get(ticket.id).failed_attempts == 0

    run(scenario())


def test_an_invitation_without_password(store, identity):
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            ticket = invitation(store, identity, sharer.port, password=None,
                                permissions=Permission.VIEW)
            session = await join(ticket, password=None)
            assert session.start.permissions == Permission.VIEW
            await session.close()

    run(scenario())


# ---------------------------------------------------------------- refusals


def test_wrong_password_is_counted(store, identity):
    async def scenario() -> None:
        novice = Novice()
        async with sharing(store, identity, novice) as sharer:
            ticket = invitation(store, identity, sharer.port)
            error = await refusal(ticket, "guess")
            assert error.code is Reason.WRONG_PASSWORD
            assert error.reason.startswith("wrong password (4 of 5 tries left)")
            assert store.get(ticket.id).failed_attempts == 1
            assert store.get(ticket.id).state is InvitationState.OPEN
            assert not novice.requests, "the novice is asked only after the password is right"

    run(scenario())


def test_the_fifth_wrong_password_locks(store, identity):
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            ticket = invitation(store, identity, sharer.port)
            codes = [(await refusal(ticket, f"guess {i}")).code for i in range(4)]
            assert codes == [Reason.WRONG_PASSWORD] * 4
            fifth = await refusal(ticket, "guess 5")
            assert fifth.code is Reason.LOCKED and "now locked" in fifth.reason
            assert store.get(ticket.id).state is InvitationState.LOCKED
            later = await refusal(ticket, "pw")
            assert later.code is Reason.LOCKED
            assert later.reason.startswith("the invitation is locked after 5 wrong passwords")
            assert store.get(ticket.id).failed_attempts == MAX_FAILED_ATTEMPTS

    run(scenario())


def test_expired(store, identity, clock):
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            ticket = invitation(store, identity, sharer.port, lifetime=timedelta(minutes=30))
            clock.advance(minutes=31)
            error = await refusal(ticket)
            assert error.code is Reason.EXPIRED
            assert error.reason == ("the invitation expired at 12:30 UTC; ask the novice for "
                                    "a new one")
            assert store.get(ticket.id).state is InvitationState.EXPIRED
            assert store.get(ticket.id).failed_attempts == 0

    run(scenario())


def test_revoked(store, identity, clock):
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            ticket = invitation(store, identity, sharer.port)
            clock.advance(minutes=3)
            store.expire_all()
            error = await refusal(ticket)
            assert error.code is Reason.REVOKED
            assert "ended this invitation at 12:03 UTC" in error.reason
            assert store.get(ticket.id).state is InvitationState.REVOKED

    run(scenario())


def test_unknown_invitation(store, identity):
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            real = invitation(store, identity, sharer.port)
            forged = Ticket.from_json(real.to_json().replace(real.id_hex, "0" * 32))
            error = await refusal(forged)
            assert error.code is Reason.UNKNOWN_INVITATION
            assert "does not know the invitation" in error.reason
            assert [i.id for i in store.invitations()] == [real.id]
            assert store.get(real.id).failed_attempts == 0

    run(scenario())


def test_declined(store, identity):
    async def scenario() -> None:
        novice = Novice(answer=False)
        async with sharing(store, identity, novice) as sharer:
            ticket = invitation(store, identity, sharer.port)
            error = await refusal(ticket)
            assert error.code is Reason.DECLINED
            assert error.reason == "Alice declined the connection"
            assert len(novice.requests) == 1

    run(scenario())


def test_no_answer_from_the_novice(store, identity):
    async def scenario() -> None:
        novice = Novice(wait=True)
        async with sharing(store, identity, novice, consent_timeout=0.5) as sharer:
            ticket = invitation(store, identity, sharer.port)
            error = await refusal(ticket)
            assert error.code is Reason.TIMEOUT
            assert "Alice did not answer within" in error.reason
            assert novice.withdrawn.is_set()

    run(scenario())


def test_one_expert_at_a_time(store, identity):
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            ticket = invitation(store, identity, sharer.port)
            first = await join(ticket)
            error = await refusal(ticket)
            assert error.code is Reason.BUSY
            assert "already being helped" in error.reason
            assert store.get(ticket.id).failed_attempts == 0
            await first.close()
            # The slot frees once the first expert has gone.
            await until(lambda: sharer.active is None)
            second = await join(ticket)
            await second.close()

    run(scenario())


def test_a_missing_password_is_caught_before_connecting(store, identity):
    async def scenario() -> None:
        novice = Novice()
        async with sharing(store, identity, novice) as sharer:
            ticket = invitation(store, identity, sharer.port)
            error = await refusal(ticket, password=None)
            assert "protected by a password" in error.reason
            assert store.get(ticket.id).failed_attempts == 0

    run(scenario())


# ---------------------------------------------------------------- transport


def test_wrong_fingerprint_sends_nothing(store, identity, xdg):
    async def scenario() -> None:
        impostor = Identity.load_or_create(xdg / "impostor")
        assert impostor.fingerprint != identity.fingerprint
        heard = b""
        done = asyncio.Event()

        async def listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal heard
            with contextlib.suppress(ConnectionError):
                heard += await reader.read()
            writer.close()
            done.set()

        server = await asyncio.start_server(listen, "127.0.0.1", 0,
                                            ssl=impostor.server_context())
        port = server.sockets[0].getsockname()[1]
        async with server:
            ticket = invitation(store, identity, port)
            error = await refusal(ticket)
            assert error.reason.startswith(f"the computer at 127.0.0.1:{port} is not the one "
                                           "that made this invitation")
            await asyncio.wait_for(done.wait(), 10)
            assert heard == b"", "the client spoke to a server it should not trust"

            # With the real sharer listed next, the client skips the impostor and gets in.
            async with sharing(store, identity, Novice()) as sharer:
                both = invitation(store, identity, port, sharer.port)
                done.clear()
                session = await join(both)
                await session.close()
                await asyncio.wait_for(done.wait(), 10)
                assert heard == b""

    run(scenario())


def test_a_client_without_tls_is_dropped_and_serving_goes_on(store, identity):
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            ticket = invitation(store, identity, sharer.port)
            reader, writer = await asyncio.open_connection("127.0.0.1", sharer.port)
            writer.write(wire.encode(Hello(role=Role.VIEWER, name="Bob", ticket_id=ticket.id)))
            await writer.drain()
            reply = b""
            with contextlib.suppress(ConnectionError):
                reply = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            # At most a TLS alert record (type 21), never a protocol message in the clear.
            assert reply[:1] in (b"", b"\x15")
            assert b"Alice" not in reply
            session = await join(ticket)
            assert session.start.sharer_name == "Alice"
            await session.close()

    run(scenario())


def test_a_server_without_tls_is_refused(store, identity):
    async def scenario() -> None:
        async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 plain text service ready\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
                await reader.read(1024)
            writer.close()

        server = await asyncio.start_server(plain, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            error = await refusal(invitation(store, identity, port))
            assert error.reason.startswith("could not reach Alice's computer (127.0.0.1:")
            assert "TLS" in error.reason

    run(scenario())


def test_nobody_listening(store, identity):
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        error = await refusal(invitation(store, identity, port))
        assert error.reason == (f"could not reach Alice's computer (127.0.0.1:{port}: "
                                "connection refused); check that ra-share is running there "
                                "and that the network lets you through")

    run(scenario())


# ---------------------------------------------------------------- what crosses, and when


@pytest.mark.parametrize("outcome", ["accepted", "declined", "wrong password"])
def test_nothing_but_the_handshake_before_consent(store, identity, outcome):
    async def scenario() -> None:
        novice = Novice(answer=outcome == "accepted", wait=True)
        async with sharing(store, identity, novice, Streaming) as sharer:
            ticket = invitation(store, identity, sharer.port)
            viewer = await RawViewer.open(sharer.port)
            await viewer.authenticate(ticket, "nope" if outcome == "wrong password" else "pw")
            handshake = [Hello, AuthChallenge, AuthResult]
            if outcome == "wrong password":
                await viewer.read_for(10)
                assert viewer.closed
                assert viewer.kinds() == handshake
                assert not novice.requests
                return
            await asyncio.wait_for(novice.asked.wait(), 10)
            # The novice is thinking: whatever the sharer sends now is all the expert gets.
            await viewer.read_for(0.5)
            assert viewer.kinds() == [*handshake, ConsentPending]
            novice.release.set()
            if outcome == "declined":
                await viewer.read_for(10)
                assert viewer.closed
                assert viewer.kinds() == [*handshake, ConsentPending, Bye]
                assert viewer.messages()[-1] == Bye(code=Reason.DECLINED,
                                                   reason="Alice declined the connection")
            else:
                await viewer.read_until(Chat)
                assert viewer.kinds() == [*handshake, ConsentPending, SessionStart, Frame, Chat]
            viewer.close()

    run(scenario())


def test_hanging_up_while_the_novice_decides_withdraws_the_question(store, identity):
    async def scenario() -> None:
        novice = Novice(wait=True)
        async with sharing(store, identity, novice, Streaming) as sharer:
            ticket = invitation(store, identity, sharer.port)
            viewer = await RawViewer.open(sharer.port)
            await viewer.authenticate(ticket, "pw")
            await viewer.read_until(ConsentPending)
            await asyncio.wait_for(novice.asked.wait(), 10)
            viewer.close()
            await asyncio.wait_for(novice.withdrawn.wait(), 10)
            await until(lambda: sharer.active is None)

    run(scenario())


def test_a_silent_client_is_timed_out(store, identity):
    async def scenario() -> None:
        async with sharing(store, identity, Novice(), handshake_timeout=0.5) as sharer:
            viewer = await RawViewer.open(sharer.port)
            await viewer.read_for(10)
            assert viewer.closed
            assert viewer.messages() == [Bye(code=Reason.TIMEOUT, reason="no answer in time")]

    run(scenario())


def test_a_protocol_violation_gets_an_error_and_serving_goes_on(store, identity):
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            ticket = invitation(store, identity, sharer.port)
            viewer = await RawViewer.open(sharer.port)
            await viewer.send(Frame(seq=1, data=b"not yours to send"))
            await viewer.read_for(10)
            assert viewer.closed
            (error,) = viewer.messages()
            assert isinstance(error, Error) and error.code is Reason.PROTOCOL_ERROR
            assert "viewer may not send Frame in state HELLO" in error.reason
            session = await join(ticket)
            await session.close()

    run(scenario())


# ---------------------------------------------------------------- identity and TLS settings


def test_identity_lives_in_the_config_dir_owner_only(identity: Identity, xdg: Path):
    assert identity.path == xdg / "config" / "remote-assist" / "identity.pem"
    assert stat.S_IMODE(identity.path.stat().st_mode) == 0o600
    assert Identity.load_or_create() == identity
    assert identity.fingerprint == hashlib.sha256(identity.certificate).hexdigest()


def test_racing_first_runs_agree_on_one_identity(xdg: Path):
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: Identity.load_or_create(xdg / "race"), range(8)))
    assert len({i.fingerprint for i in made}) == 1
    assert [p.name for p in (xdg / "race").iterdir()] == ["identity.pem"]


def test_an_identity_others_can_read_is_refused(identity: Identity):
    identity.path.chmod(0o644)
    with pytest.raises(IdentityError, match="can be read by other users; run `chmod 600"):
        Identity.load_or_create()


def test_a_damaged_identity_is_a_sentence(identity: Identity):
    identity.path.write_bytes(identity.path.read_bytes()[:200])
    with pytest.raises(IdentityError) as error:
        Identity.load_or_create()
    assert "is damaged" in str(error.value) and "\n" not in str(error.value)


def test_the_sharer_speaks_only_tls_1_3(store, identity):
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            old = client_context()
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_2
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.open_connection("127.0.0.1", sharer.port, ssl=old)
            viewer = await RawViewer.open(sharer.port)
            assert viewer.writer.get_extra_info("ssl_object").version() == "TLSv1.3"
            viewer.close()

    run(scenario())


def test_a_peer_that_floods_small_messages_is_held_back_by_tcp():
    """Bytes nobody reads yet stop being read off the socket past the link's limit, so a peer
    cannot make this side buffer without end."""
    async def scenario() -> None:
        links: list[Link] = []
        server = await asyncio.get_running_loop().create_server(
            lambda: Link(Role.SHARER, on_connected=links.append), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        hello = wire.encode(Hello(role=Role.VIEWER, name="B", ticket_id=bytes(16)))
        flood = asyncio.ensure_future(_write_for_ever(writer, hello * 1000))
        try:
            await until(lambda: bool(links) and links[0].connection.buffered > READ_LIMIT)
            await asyncio.sleep(0.5)  # time enough to take megabytes more, were it reading
            assert links[0].connection.buffered < READ_LIMIT + 2 * ROOM_SIZE
            assert not flood.done()  # the writer is blocked: TCP holds the rest
        finally:
            flood.cancel()
            writer.close()
            server.close()

    run(scenario())


async def _write_for_ever(writer: asyncio.StreamWriter, chunk: bytes) -> None:
    while True:
        writer.write(chunk)
        await writer.drain()
