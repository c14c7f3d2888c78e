"""Small shared pieces of the tests."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any, TypeVar

from engine.identity import Identity
from engine.invitations import InvitationStore
from engine.netaddr import free_port
from engine.tickets import Address, Scrypt, Ticket

__all__ = ["CHEAP_KDF", "FakeClock", "Mailbox", "attachment", "free_port", "invitation", "run",
           "until"]

T = TypeVar("T")

# scrypt's cheapest allowed setting: the tests exercise the proof, not its cost.
CHEAP_KDF = Scrypt(n=Scrypt.MIN_N, r=8, p=1)


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    now: datetime = field(default_factory=lambda: datetime(2030, 5, 1, 12, 0, tzinfo=timezone.utc))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def attachment(message: EmailMessage) -> tuple[str, str | None, bytes]:
    """(content type, file name, bytes) of the message's only attachment."""
    (part,) = list(message.iter_attachments())
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return part.get_content_type(), part.get_filename(), payload


class Mailbox:
    """What a real SMTP server on loopback received."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content,
                                           policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, message))
        return "250 OK"


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for `condition`; fail the test if it does not come true in `timeout` seconds."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def invitation(store: InvitationStore, identity: Identity, *ports: int,
               password: str | None = "pw", **options: Any) -> Ticket:
    """An invitation from Alice to the sharer listening on 127.0.0.1 at `ports`."""
    options.setdefault("lifetime", timedelta(hours=1))
    return store.create(name="Alice", fingerprint=identity.fingerprint, password=password,
                        addresses=[Address(host="127.0.0.1", port=p) for p in ports],
                        kdf=CHEAP_KDF, **options)
