"""The expert's side of the network: open an invitation, prove the password, wait for consent.

`Client(ticket, password=..., name=...).connect()` returns a `Session` once the novice has
accepted; every refusal on the way (unreachable, wrong certificate, wrong password, expired,
revoked, locked, declined, busy) raises `SessionError` with a sentence the expert can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass

from engine.channel import Channel, Session, SessionError
from engine.identity import client_context, fingerprint
from engine.protocol import (
    NONCE_SIZE,
    AuthChallenge,
    AuthProof,
    AuthResult,
    ConsentPending,
    Hello,
    Reason,
    Role,
    SessionStart,
)
from engine.tickets import Address, Ticket, proof

__all__ = ["Client", "SessionError"]


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
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address.host, address.port, ssl=context,
                                            ssl_handshake_timeout=self.connect_timeout),
                    self.connect_timeout)
            except ssl.SSLError as exc:
                problems.append(f"{address} does not speak TLS 1.3 ({exc.reason or exc})")
                continue
            except (OSError, asyncio.TimeoutError) as exc:
                problems.append(f"{address}: {_describe(exc)}")
                continue
            certificate = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            if certificate is None or fingerprint(certificate) != self.ticket.fingerprint:
                impostors.append(address)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                continue
            return Channel(reader, writer, Role.VIEWER)
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
