"""Invitations: the ticket file the expert receives, and the password proof.

Ticket file, format version 1: a UTF-8 JSON object, saved as ``*.rainvite`` and sent with the
MIME type ``application/x-remote-assist-invitation``::

    {
      "format": "remote-assist-invitation",
      "version": 1,
      "id": "32 lowercase hex digits: 128 random bits",
      "name": "the novice's display name",
      "addresses": [{"host": "192.0.2.2", "port": 5950}, {"host": "127.0.0.1", "port": 5950}],
      "fingerprint": "64 lowercase hex digits: SHA-256 of the sharer's certificate (DER)",
      "expires": "2030-05-01T14:02:00Z",
      "password": true,
      "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "base64 of 16 bytes"},
      "permissions": ["view", "control"]
    }

Every field is required and no other is allowed, so a damaged or altered file is refused with
a sentence that names the field. The file never holds the password nor anything that checks a
guess offline: only scrypt's parameters and salt. The novice's store (`engine.invitations`)
keeps the scrypt output; the expert proves knowledge of the password on each connection with
``HMAC-SHA256(scrypt(password, salt), nonce ‖ ticket id)`` for a fresh server nonce.
Without a password the same proof runs over the empty password, so there is one code path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import tempfile
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.protocol.messages import Permission

__all__ = [
    "DEFAULT_SCRYPT",
    "EXTENSION",
    "ID_SIZE",
    "MIME_TYPE",
    "VERSION",
    "Address",
    "Scrypt",
    "Ticket",
    "TicketError",
    "describe_time",
    "name_problem",
    "permission_names",
    "proof",
]

VERSION = 1
FORMAT = "remote-assist-invitation"
EXTENSION = ".rainvite"
MIME_TYPE = "application/x-remote-assist-invitation"
ID_SIZE = 16
SALT_SIZE = 16
KEY_SIZE = 32
MAX_NAME = 64
MAX_ADDRESSES = 32
# A real ticket is well under 2 KB; anything this big is not one.
MAX_TICKET_BYTES = 64 * 1024

_FIELDS = ("format", "version", "id", "name", "addresses", "fingerprint", "expires", "password",
           "kdf", "permissions")
_KDF_FIELDS = ("name", "n", "r", "p", "salt")
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_EXPIRES_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_PERMISSION_NAMES = {"view": Permission.VIEW, "control": Permission.CONTROL}


class TicketError(ValueError):
    """An invitation file that cannot be used; the message is one sentence for the user."""


def _utf8(text: str) -> bytes:
    # NFC so that the same password typed on two systems gives the same bytes.
    return unicodedata.normalize("NFC", text).encode("utf-8")


@dataclass(frozen=True, kw_only=True, slots=True)
class Scrypt:
    """scrypt's cost parameters and salt, as the ticket carries them (RFC 7914 names)."""

    # n = 2^15, r = 8: 32 MiB and about 100 ms per derivation on the 2-core machines this is
    # built on (2^14 measured 46 ms, 2^15 100 ms, 2^16 202 ms). The expert pays it once per
    # connection; an offline guesser with a stolen store pays it per guess.
    n: int = 2**15
    r: int = 8
    p: int = 1
    salt: bytes = b""

    # Bounds a ticket must stay within, so a hostile one cannot make the viewer spend
    # gigabytes or minutes: at most 256 MiB and 2^23 block mixes.
    MIN_N = 2**10
    MAX_MEMORY = 256 * 1024 * 1024
    MAX_WORK = 2**23

    @property
    def memory(self) -> int:
        return 128 * self.n * self.r * self.p

    def problem(self) -> str | None:
        """What is wrong with these parameters, or None."""
        if self.n < self.MIN_N or self.n & (self.n - 1):
            return f"scrypt's n must be a power of two of at least {self.MIN_N}"
        if not 1 <= self.r <= 32 or not 1 <= self.p <= 16:
            return "scrypt's r must be 1 to 32 and p 1 to 16"
        if self.memory > self.MAX_MEMORY or self.n * self.r * self.p > self.MAX_WORK:
            return "scrypt's parameters ask for more work than any invitation needs"
        if not 16 <= len(self.salt) <= 64:
            return "the salt must be 16 to 64 bytes"
        return None

    def with_new_salt(self) -> Scrypt:
        return replace(self, salt=secrets.token_bytes(SALT_SIZE))

    def derive(self, password: str) -> bytes:
        """The 32-byte key for `password`: the HMAC key of the proof and the store's verifier."""
        return hashlib.scrypt(_utf8(password), salt=self.salt, n=self.n, r=self.r, p=self.p,
                              maxmem=self.memory + 1024 * 1024, dklen=KEY_SIZE)


DEFAULT_SCRYPT = Scrypt()


def proof(key: bytes, nonce: bytes, ticket_id: bytes) -> bytes:
    """HMAC-SHA256(key, nonce ‖ ticket id): what the expert sends, what the novice expects."""
    return hmac.new(key, nonce + ticket_id, hashlib.sha256).digest()


@dataclass(frozen=True, kw_only=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def name_problem(name: str) -> str | None:
    """What is wrong with `name` as the novice's display name, or None."""
    # The name is shown in prompts: no line breaks or control characters to fake them with.
    if not 1 <= len(name) <= MAX_NAME or not name.strip() or not name.isprintable():
        return f"the name must be 1 to {MAX_NAME} printable characters"
    return None


def permission_names(permissions: Permission) -> list[str]:
    return [name for name, flag in _PERMISSION_NAMES.items() if flag in permissions]


def describe_time(when: datetime, now: datetime | None = None) -> str:
    """`when` for people: "14:02 UTC" today, "2030-05-01 14:02 UTC" another day."""
    when = when.astimezone(timezone.utc)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return when.strftime("%H:%M UTC" if when.date() == now.date() else "%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, kw_only=True, slots=True)
class Ticket:
    """An invitation as the expert holds it."""

    id: bytes
    name: str
    addresses: tuple[Address, ...]
    fingerprint: str
    expires: datetime
    password: bool
    kdf: Scrypt
    permissions: Permission

    @property
    def id_hex(self) -> str:
        return self.id.hex()

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "version": VERSION,
            "id": self.id.hex(),
            "name": self.name,
            "addresses": [{"host": a.host, "port": a.port} for a in self.addresses],
            "fingerprint": self.fingerprint,
            "expires": self.expires.astimezone(timezone.utc).strftime(_EXPIRES_FORMAT),
            "password": self.password,
            "kdf": {"name": "scrypt", "n": self.kdf.n, "r": self.kdf.r, "p": self.kdf.p,
                    "salt": base64.b64encode(self.kdf.salt).decode("ascii")},
            "permissions": permission_names(self.permissions),
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "the invitation") -> Ticket:
        """Parse and check a ticket; any problem raises TicketError naming `source`."""
        return _Parser(source).ticket(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Ticket:
        path = Path(path)
        try:
            with path.open("rb") as file:
                data = file.read(MAX_TICKET_BYTES + 1)
        except OSError as exc:
            raise TicketError(f"cannot read {path}: {exc.strerror or exc}") from None
        return cls.from_json(data, path.name)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ticket file at once (no half-written file is ever visible)."""
        write_atomically(Path(path), self.to_json().encode("utf-8"), mode=0o644)


def write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Parser:
    """Checks a ticket document field by field; every failure is one sentence."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, problem: str, advice: str = "ask the novice to send it again") -> TicketError:
        return TicketError(f"{self.source} {problem}; {advice}")

    def not_a_ticket(self, why: str) -> TicketError:
        return self.fail(f"is not a remote-assist invitation ({why})",
                         "check that you opened the right file")

    def tampered(self, problem: str) -> TicketError:
        return self.fail(f"has been damaged or altered: {problem}",
                         "ask the novice for a new invitation")

    def ticket(self, data: bytes | str) -> Ticket:
        document = self.document(data)
        version = document.get("version")
        if document.get("format") != FORMAT or "version" not in document:
            raise self.not_a_ticket("no format and version marks")
        if type(version) is not int or version < 1:
            raise self.tampered("the version must be a positive whole number")
        if version > VERSION:
            raise self.fail(
                f"is a version {version} invitation and this remote-assist reads version "
                f"{VERSION}", "update remote-assist to open it")
        self.exact_fields(document, _FIELDS, "")
        return Ticket(
            id=bytes.fromhex(self.match(document["id"], "id", _HEX_ID, "32 lowercase hex digits")),
            name=self.name(document["name"]),
            addresses=self.addresses(document["addresses"]),
            fingerprint=self.match(document["fingerprint"], "fingerprint", _FINGERPRINT,
                                   "64 lowercase hex digits"),
            expires=self.expires(document["expires"]),
            password=self.typed(document["password"], "password", bool),
            kdf=self.kdf(document["kdf"]),
            permissions=self.permissions(document["permissions"]),
        )

    def document(self, data: bytes | str) -> dict[str, Any]:
        if isinstance(data, bytes):
            if len(data) > MAX_TICKET_BYTES:
                raise self.not_a_ticket(f"over {MAX_TICKET_BYTES // 1024} KiB")
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.end == len(data) and "unexpected end" in exc.reason:
                    raise self.fail("is cut short (it ends inside a character)") from None
                raise self.not_a_ticket("not UTF-8 text") from None
        if not data.strip():
            raise self.fail("is empty")
        try:
            document = json.loads(data)
        except json.JSONDecodeError as exc:
            # A prefix of a JSON object fails at its end, or inside its last token.
            rest = data[exc.pos:].rstrip()
            if data.lstrip().startswith("{") and (
                exc.msg.startswith("Unterminated string") or not re.search(r"[{}\[\]:,]", rest)
            ):
                raise self.fail("is cut short (the text ends early)") from None
            raise self.not_a_ticket(
                f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if not isinstance(document, dict):
            raise self.not_a_ticket("not a JSON object")
        return document

    def exact_fields(self, obj: dict[str, Any], names: tuple[str, ...], where: str) -> None:
        unknown = sorted(set(obj) - set(names))
        if unknown:
            raise self.tampered(f"unknown field '{where}{unknown[0]}'")
        missing = [name for name in names if name not in obj]
        if missing:
            raise self.tampered(f"the field '{where}{missing[0]}' is missing")

    def typed(self, value: Any, field: str, kind: type) -> Any:
        # type() rather than isinstance(): JSON true must not pass as the integer 1.
        if type(value) is not kind:
            raise self.tampered(f"the field '{field}' must be {_KIND_NAMES[kind]}")
        return value

    def match(self, value: Any, field: str, pattern: re.Pattern[str], what: str) -> str:
        if not pattern.fullmatch(self.typed(value, field, str)):
            raise self.tampered(f"the field '{field}' must be {what}")
        return str(value)

    def name(self, value: Any) -> str:
        name = str(self.typed(value, "name", str))
        problem = name_problem(name)
        if problem:
            raise self.tampered(problem)
        return name

    def addresses(self, value: Any) -> tuple[Address, ...]:
        if type(value) is not list or not 1 <= len(value) <= MAX_ADDRESSES:
            raise self.tampered(f"the field 'addresses' must list 1 to {MAX_ADDRESSES} addresses")
        result = []
        for item in value:
            if type(item) is not dict:
                raise self.tampered("each address must be an object with a host and a port")
            self.exact_fields(item, ("host", "port"), "addresses.")
            host = self.typed(item["host"], "addresses.host", str)
            port = self.typed(item["port"], "addresses.port", int)
            if not valid_host(host) or not 1 <= port <= 65535:
                raise self.tampered(f"{host!r} port {port} is not a valid address")
            result.append(Address(host=host, port=port))
        return tuple(result)

    def expires(self, value: Any) -> datetime:
        text = self.typed(value, "expires", str)
        try:
            when = datetime.strptime(text, _EXPIRES_FORMAT)
        except ValueError:
            raise self.tampered("the field 'expires' must read like 2030-05-01T14:02:00Z") from None
        return when.replace(tzinfo=timezone.utc)

    def kdf(self, value: Any) -> Scrypt:
        if type(value) is not dict:
            raise self.tampered("the field 'kdf' must be an object")
        self.exact_fields(value, _KDF_FIELDS, "kdf.")
        if value["name"] != "scrypt":
            raise self.tampered("the only key derivation this version knows is scrypt")
        n, r, p = (self.typed(value[key], f"kdf.{key}", int) for key in ("n", "r", "p"))
        try:
            salt = base64.b64decode(self.typed(value["salt"], "kdf.salt", str), validate=True)
        except binascii.Error:
            raise self.tampered("the salt is not valid base64") from None
        params = Scrypt(n=n, r=r, p=p, salt=salt)
        problem = params.problem()
        if problem:
            raise self.tampered(problem)
        return params

    def permissions(self, value: Any) -> Permission:
        names: list[Any] = value if type(value) is list else [None]
        if (any(type(name) is not str or name not in _PERMISSION_NAMES for name in names)
                or len(set(names)) != len(names) or "view" not in names):
            raise self.tampered(
                "the field 'permissions' must list \"view\" and optionally \"control\", once each")
        result = Permission(0)
        for name in names:
            result |= _PERMISSION_NAMES[name]
        return result


_KIND_NAMES = {str: "text", int: "a whole number", bool: "true or false"}


def valid_host(host: str) -> bool:
    """An IP address or a DNS name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.fullmatch(host))
    return True
