"""Small shared pieces of the invitation, channel, mail and CLI tests."""

from __future__ import annotations

import email
import email.policy
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

from engine.tickets import Scrypt

# scrypt's cheapest allowed setting: the tests exercise the proof, not its cost.
CHEAP_KDF = Scrypt(n=Scrypt.MIN_N, r=8, p=1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
