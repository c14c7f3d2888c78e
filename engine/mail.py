"""Invitations by e-mail: a standard MIME message with the ticket attached, and SMTP to send it.

The message is plain text that tells the expert how to open the attachment, plus the ticket
file under its own MIME type (`engine.tickets.MIME_TYPE`), so a mail client can hand it to
``ra-view``. It never contains the password: the novice gives that some other way.

SMTP: STARTTLS when asked for (then the server's certificate is checked against the system's
CAs, or `cafile`), and login only over an encrypted connection.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from engine.tickets import MIME_TYPE, Ticket, write_atomically

__all__ = ["MailError", "SmtpSettings", "invitation_message", "send_message", "write_eml"]


class MailError(Exception):
    """The message could not be sent or written; the text says what to check."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpSettings:
    host: str
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.username and not self.starttls:
            raise MailError("refusing to send the SMTP password unencrypted; turn STARTTLS on "
                            "(--starttls, or starttls = yes in the [smtp] settings)")

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def invitation_message(
    ticket: Ticket, *, sender: str, recipients: Sequence[str], filename: str
) -> EmailMessage:
    """The e-mail that carries `ticket` as the attachment `filename`."""
    # With its date: the mail may be read on another day than it was sent.
    expires = ticket.expires.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    password = (
        f"Enter the password {ticket.name} gives you. It is not in this e-mail: ask for it by "
        "phone or in person."
        if ticket.password else
        "This invitation has no password: keep the file to yourself."
    )
    body = f"""\
{ticket.name} is asking for your help with their computer, through remote-assist.

To help:
  1. Save the attached file, {filename}.
  2. Open it with remote-assist: double-click it, or run  ra-view {filename}
  3. {password}
  4. Wait for {ticket.name} to accept. Both screens show the same session code:
     check it together before going on.

The invitation expires at {expires}. After that, ask {ticket.name} for a new one.
"""
    message = EmailMessage()
    message["Subject"] = f"{ticket.name} asks for your help (remote-assist invitation)"
    message["From"] = sender
    if recipients:
        message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("<> ") or None)
    message.set_content(body)
    maintype, subtype = MIME_TYPE.split("/")
    message.add_attachment(ticket.to_json().encode("utf-8"), maintype=maintype,
                           subtype=subtype, filename=filename)
    return message


def write_eml(message: EmailMessage, path: str | Path) -> None:
    """Save the message as an .eml file any mail client can open."""
    try:
        write_atomically(Path(path), message.as_bytes(), mode=0o644)
    except OSError as exc:
        raise MailError(f"cannot write {path}: {exc.strerror or exc}") from None


def send_message(message: EmailMessage, settings: SmtpSettings) -> None:
    """Hand the message to the SMTP server; MailError says what went wrong."""
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=settings.cafile))
            if settings.username:
                smtp.login(settings.username, settings.password or "")
            smtp.send_message(message)
    except smtplib.SMTPNotSupportedError:
        raise MailError(f"the mail server {settings} does not offer STARTTLS; use another "
                        "server or port") from None
    except smtplib.SMTPAuthenticationError:
        raise MailError(f"the mail server {settings} refused the login for "
                        f"{settings.username}; check the user name and password") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError(f"the mail server {settings} refused the address "
                        f"{', '.join(exc.recipients)}; check it") from None
    except (smtplib.SMTPException, OSError) as exc:
        # ssl.SSLError is an OSError: a bad certificate lands here too.
        raise MailError(f"could not send the e-mail through {settings} ({exc}); check the "
                        "SMTP settings") from None
