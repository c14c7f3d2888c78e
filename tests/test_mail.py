"""Invitations by e-mail, delivered to a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import email.policy
import ipaddress
import ssl
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import Mailbox, attachment, free_port

from engine.mail import MailError, SmtpSettings, invitation_message, send_message, write_eml
from engine.protocol import Permission
from engine.tickets import MIME_TYPE, Address, Scrypt, Ticket


def make_ticket(password: bool = True) -> Ticket:
    return Ticket(
        id=bytes(range(16)), name="Alice", addresses=(Address(host="127.0.0.1", port=5950),),
        fingerprint="ab" * 32, expires=datetime(2030, 5, 1, 14, 2, tzinfo=timezone.utc),
        password=password, kdf=Scrypt(salt=b"s" * 16),
        permissions=Permission.VIEW | Permission.CONTROL)


@pytest.fixture
def ticket_file(tmp_path: Path) -> tuple[Ticket, Path]:
    ticket = make_ticket()
    path = tmp_path / "help.rainvite"
    ticket.save(path)
    return ticket, path


def message_for(ticket: Ticket, path: Path, recipients: list[str] | None = None) -> Any:
    return invitation_message(ticket, sender="alice@example.org",
                              recipients=recipients or ["bob@example.org"], filename=path.name)


def test_the_received_message_parses_and_carries_the_ticket(smtp_server, ticket_file):
    controller, mailbox = smtp_server
    ticket, path = ticket_file
    send_message(message_for(ticket, path, ["bob@example.org", "carol@example.org"]),
                 SmtpSettings(host="127.0.0.1", port=controller.port))
    ((sender, recipients, received),) = mailbox.messages
    assert sender == "alice@example.org"
    assert recipients == ["bob@example.org", "carol@example.org"]
    assert "Alice asks for your help" in received["Subject"]
    body = received.get_body(("plain",)).get_content()
    assert "ra-view help.rainvite" in body
    assert "Enter the password Alice gives you" in body
    assert "expires at 2030-05-01 14:02 UTC" in body
    content_type, filename, data = attachment(received)
    assert content_type == MIME_TYPE
    assert filename == "help.rainvite"
    assert data == path.read_bytes()
    assert Ticket.from_json(data) == ticket


def test_a_passwordless_invitation_says_so():
    ticket = make_ticket(password=False)
    message = invitation_message(ticket, sender="a@example.org", recipients=[],
                                 filename="x.rainvite")
    body = message.get_body(("plain",)).get_content()
    assert "has no password" in body and "Enter the password" not in body
    assert message["To"] is None


def test_eml_file_for_any_mail_client(tmp_path, ticket_file):
    ticket, path = ticket_file
    eml = tmp_path / "invitation.eml"
    write_eml(message_for(ticket, path), eml)
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "bob@example.org"
    assert attachment(parsed)[2] == path.read_bytes()  # type: ignore[arg-type]


def test_eml_write_failure_is_a_sentence(tmp_path, ticket_file):
    ticket, path = ticket_file
    with pytest.raises(MailError, match="cannot write"):
        write_eml(message_for(ticket, path), tmp_path / "missing-dir" / "x.eml")


# ---------------------------------------------------------------- STARTTLS and login


def certificate_for_loopback(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Logins:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = (auth_data.login, auth_data.password) == (b"alice", b"s3cret")
        self.seen.append((auth_data.login.decode(), ok))
        # handled=False: aiosmtpd itself answers 535 to a refused login.
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def secure_smtp(tmp_path: Path) -> Iterator[tuple[Controller, Mailbox, Logins, Path]]:
    """aiosmtpd requiring STARTTLS, and a login only over TLS."""
    cert, key = certificate_for_loopback(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox, logins = Mailbox(), Logins()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(),
                            tls_context=context, require_starttls=True, authenticator=logins,
                            auth_required=True, auth_require_tls=True)
    controller.start()
    try:
        yield controller, mailbox, logins, cert
    finally:
        controller.stop()


def test_starttls_and_login(secure_smtp, ticket_file):
    controller, mailbox, logins, cert = secure_smtp
    ticket, path = ticket_file
    send_message(message_for(ticket, path),
                 SmtpSettings(host="127.0.0.1", port=controller.port, starttls=True,
                              username="alice", password="s3cret", cafile=str(cert)))
    assert logins.seen == [("alice", True)]
    ((_, _, received),) = mailbox.messages
    assert attachment(received)[2] == path.read_bytes()


def test_a_refused_login(secure_smtp, ticket_file):
    controller, mailbox, logins, cert = secure_smtp
    ticket, path = ticket_file
    with pytest.raises(MailError, match="refused the login for alice"):
        send_message(message_for(ticket, path),
                     SmtpSettings(host="127.0.0.1", port=controller.port, starttls=True,
                                  username="alice", password="guess", cafile=str(cert)))
    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN); all are refused.
    assert logins.seen and set(logins.seen) == {("alice", False)}
    assert mailbox.messages == []


def test_an_untrusted_server_certificate(secure_smtp, ticket_file):
    controller, mailbox, logins, _ = secure_smtp
    ticket, path = ticket_file
    with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"):
        send_message(message_for(ticket, path),
                     SmtpSettings(host="127.0.0.1", port=controller.port, starttls=True,
                                  username="alice", password="s3cret"))
    assert logins.seen == [] and mailbox.messages == []


def test_the_password_never_goes_out_unencrypted(smtp_server, ticket_file):
    controller, mailbox = smtp_server
    ticket, path = ticket_file
    with pytest.raises(MailError, match="refusing to send the SMTP password unencrypted"):
        settings = SmtpSettings(host="127.0.0.1", port=controller.port, username="alice",
                                password="s3cret")
        send_message(message_for(ticket, path), settings)
    assert mailbox.messages == []


def test_starttls_asked_but_not_offered(smtp_server, ticket_file):
    controller, mailbox = smtp_server
    ticket, path = ticket_file
    with pytest.raises(MailError, match="does not offer STARTTLS"):
        send_message(message_for(ticket, path),
                     SmtpSettings(host="127.0.0.1", port=controller.port, starttls=True))
    assert mailbox.messages == []


def test_no_server_there(ticket_file):
    ticket, path = ticket_file
    with pytest.raises(MailError, match=r"could not send the e-mail through 127\.0\.0\.1"):
        send_message(message_for(ticket, path),
                     SmtpSettings(host="127.0.0.1", port=free_port(), timeout=5))
