"""The sharer's identity: a key and a self-signed certificate, and the TLS contexts on top.

The first `Identity.load_or_create()` makes an ECDSA P-256 key and a certificate signed by it,
and keeps both in one PEM file, ``identity.pem`` in the user's config directory (platformdirs,
so ``$XDG_CONFIG_HOME/remote-assist`` on Linux), mode 0600. No certificate authority vouches
for it: the expert trusts it because its SHA-256 fingerprint is the one in the invitation
(pinning). Making a new identity therefore invalidates every invitation made before.

TLS is 1.3 only, both ways; there is no fallback to anything older or unencrypted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.dirs import config_dir

__all__ = [
    "Identity",
    "IdentityError",
    "client_context",
    "fingerprint",
    "format_fingerprint",
]

IDENTITY_FILE = "identity.pem"
# The certificate's dates are not what the expert checks (the fingerprint is), but TLS stacks
# want some: long enough never to be in the way.
VALIDITY = timedelta(days=20 * 365)


class IdentityError(Exception):
    """The identity file cannot be used; the message says what to do."""


def fingerprint(certificate_der: bytes) -> str:
    """SHA-256 of the DER certificate as 64 lowercase hex digits: what tickets carry."""
    return hashlib.sha256(certificate_der).hexdigest()


def format_fingerprint(hex_digits: str) -> str:
    """The fingerprint as people compare it: AB:CD:… ."""
    return ":".join(hex_digits[i:i + 2] for i in range(0, len(hex_digits), 2)).upper()


def _tls13(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    return context


def client_context() -> ssl.SSLContext:
    """TLS 1.3 for the viewer. The caller must check the pin before sending a byte.

    No CA can vouch for a self-signed certificate, so the chain is not verified here; the
    fingerprint comparison after the handshake (`engine.client`) is the whole of the trust.
    """
    context = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class Identity:
    path: Path
    certificate: bytes  # DER

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike[str] | None = None) -> Identity:
        """This user's identity, made on first use. Safe when two processes race to make it."""
        folder = Path(directory) if directory is not None else config_dir()
        path = folder / IDENTITY_FILE
        if not path.exists():
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                _create(path)
            except OSError as exc:
                raise IdentityError(f"cannot write the identity file {path}: "
                                    f"{exc.strerror or exc}") from None
        return cls._load(path)

    @classmethod
    def _load(cls, path: Path) -> Identity:
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise IdentityError(f"cannot read the identity file {path}: "
                                f"{exc.strerror or exc}") from None
        if stat.S_IMODE(mode) & 0o077:
            raise IdentityError(f"the identity file {path} can be read by other users; "
                                f"run `chmod 600 {path}` and try again")
        try:
            certificate = x509.load_pem_x509_certificate(data)
            identity = cls(path, certificate.public_bytes(serialization.Encoding.DER))
            identity.server_context()  # proves that the key is there and matches
        except (ValueError, ssl.SSLError) as exc:
            raise IdentityError(
                f"the identity file {path} is damaged ({exc}); move it away and run "
                "`ra-share identity` to make a new one (invitations made before stop working)"
            ) from None
        return identity

    def server_context(self) -> ssl.SSLContext:
        """TLS 1.3 for the sharer, presenting this identity."""
        context = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        context.load_cert_chain(self.path)
        return context


def _create(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "remote-assist sharer")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + VALIDITY)
        .sign(key, hashes.SHA256())
    )
    data = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    # mkstemp makes the file 0600 before the key is in it; link() publishes it whole and fails
    # if another process got there first, in which case its identity is the one to keep.
    fd, tmp = tempfile.mkstemp(prefix=".identity-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
