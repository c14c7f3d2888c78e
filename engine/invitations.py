"""The novice's invitation store: which invitations exist, and whether each still lets anyone in.

One SQLite database under the user's state directory (platformdirs, so ``$XDG_STATE_HOME`` on
Linux), mode 0600. Every change is one ``BEGIN IMMEDIATE`` transaction, so several ``ra-share``
processes (a sharer serving, a ``ra-share expire --all`` in a terminal) can use it at once: a
wrong password is counted exactly once and an invitation ended in one process is refused by the
next proof another process checks.

Each row keeps the scrypt output for the invitation's password (the verifier: the key of the
proof HMAC), never the password, and scrypt's parameters and salt, which the ticket file
carries too: with them an open invitation's file can be written or e-mailed again (`ticket`).
States: open, revoked (ended by the novice, ``ra-share expire``), locked (after
`MAX_FAILED_ATTEMPTS` wrong proofs); "expired" is not stored but read off the clock, which is
injectable for tests.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from engine.dirs import state_dir
from engine.protocol.messages import Permission, Reason
from engine.tickets import (
    DEFAULT_SCRYPT,
    ID_SIZE,
    Address,
    Scrypt,
    Ticket,
    describe_time,
    proof,
)

__all__ = [
    "MAX_FAILED_ATTEMPTS",
    "Clock",
    "Invitation",
    "InvitationRefused",
    "InvitationState",
    "InvitationStore",
    "StoreError",
    "default_store_path",
    "utc_now",
]

MAX_FAILED_ATTEMPTS = 5
# How long to wait for another process's transaction before giving up; they last milliseconds.
BUSY_TIMEOUT = 30.0

Clock = Callable[[], datetime]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS invitations (
    id              TEXT PRIMARY KEY,   -- 32 hex digits
    name            TEXT NOT NULL,
    created         REAL NOT NULL,      -- Unix seconds, UTC
    expires         REAL NOT NULL,
    verifier        BLOB NOT NULL,      -- scrypt(password, salt): the proof's HMAC key
    password        INTEGER NOT NULL,   -- 1 if the novice set one
    permissions     INTEGER NOT NULL,   -- Permission flags
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL CHECK (state IN ('open', 'revoked', 'locked')),
    ended           REAL,               -- when it was revoked or locked
    scrypt_n        INTEGER,            -- the ticket's scrypt parameters and salt; NULL in
    scrypt_r        INTEGER,            -- rows made before they were kept
    scrypt_p        INTEGER,
    salt            BLOB
)
"""
# Columns added since the first version of the table, for stores made before them.
_ADDED_COLUMNS = {"scrypt_n": "INTEGER", "scrypt_r": "INTEGER", "scrypt_p": "INTEGER",
                  "salt": "BLOB"}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def default_store_path() -> Path:
    return state_dir() / "invitations.sqlite3"


class InvitationState(str, Enum):
    OPEN = "open"
    EXPIRED = "expired"
    REVOKED = "revoked"
    LOCKED = "locked"


class StoreError(Exception):
    """The store cannot be used (damaged, unreadable) or has no such invitation."""


class InvitationRefused(Exception):
    """A connection attempt the store turned down; `reason` is for the expert to read."""

    def __init__(self, code: Reason, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, kw_only=True, slots=True)
class Invitation:
    """One row of the store, with its state as of the store's clock."""

    id: bytes
    name: str
    created: datetime
    expires: datetime
    password: bool
    permissions: Permission
    failed_attempts: int
    state: InvitationState
    ended: datetime | None

    @property
    def id_hex(self) -> str:
        return self.id.hex()

    def time_left(self, now: datetime) -> timedelta:
        if self.state is not InvitationState.OPEN:
            return timedelta(0)
        return max(self.expires - now, timedelta(0))


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


class InvitationStore:
    """The invitations this user has made. Safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 clock: Clock = utc_now) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The verifiers let anyone who reads them try passwords offline: owner only.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                       check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the invitation store {self.path}: {exc}") from None
        with self._transaction() as db:
            db.execute(_SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(invitations)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE invitations ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> InvitationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(
                    f"the invitation store {self.path} cannot be used ({exc}); if it is "
                    "damaged, move it away and make new invitations"
                ) from None

    def _row(self, db: sqlite3.Connection, ticket_id: bytes) -> Invitation | None:
        row = db.execute(
            "SELECT id, name, created, expires, password, permissions, failed_attempts, state,"
            " ended FROM invitations WHERE id = ?", (ticket_id.hex(),)).fetchone()
        return None if row is None else self._invitation(row)

    def _invitation(self, row: tuple[Any, ...]) -> Invitation:
        id_hex, name, created, expires, password, permissions, attempts, state, ended = row
        status = InvitationState(state)
        if status is InvitationState.OPEN and self.clock() >= _time(expires):
            status = InvitationState.EXPIRED
        return Invitation(
            id=bytes.fromhex(id_hex), name=name, created=_time(created), expires=_time(expires),
            password=bool(password), permissions=Permission(permissions),
            failed_attempts=attempts, state=status,
            ended=None if ended is None else _time(ended),
        )

    def create(
        self,
        *,
        name: str,
        addresses: Sequence[Address],
        fingerprint: str,
        lifetime: timedelta,
        password: str | None,
        permissions: Permission = Permission.VIEW | Permission.CONTROL,
        kdf: Scrypt = DEFAULT_SCRYPT,
    ) -> Ticket:
        """Record a new invitation and return its ticket. `kdf` sets scrypt's cost."""
        if lifetime <= timedelta(0):
            raise ValueError("an invitation needs a positive lifetime")
        params = kdf.with_new_salt()
        problem = params.problem()
        if problem:
            raise ValueError(f"no viewer would accept these scrypt parameters: {problem}")
        now = self.clock()
        # The ticket says the expiry to the second: keep the same instant here.
        expires = (now + lifetime).replace(microsecond=0)
        ticket = Ticket(
            id=secrets.token_bytes(ID_SIZE), name=name, addresses=tuple(addresses),
            fingerprint=fingerprint, expires=expires, password=password is not None,
            kdf=params, permissions=permissions | Permission.VIEW,
        )
        verifier = params.derive(password or "")
        with self._transaction() as db:
            db.execute(
                "INSERT INTO invitations (id, name, created, expires, verifier, password,"
                " permissions, state, scrypt_n, scrypt_r, scrypt_p, salt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?)",
                (ticket.id_hex, name, now.timestamp(), expires.timestamp(), verifier,
                 int(ticket.password), int(ticket.permissions), params.n, params.r, params.p,
                 params.salt))
        return ticket

    def ticket(self, ticket_id: bytes, *, addresses: Sequence[Address],
               fingerprint: str) -> Ticket:
        """The ticket of an open invitation, to write or e-mail its file again: as made, but
        with the addresses and fingerprint given, which are this computer's as of now."""
        with self._transaction() as db:
            invitation = self._row(db, ticket_id)
            kdf = db.execute("SELECT scrypt_n, scrypt_r, scrypt_p, salt FROM invitations"
                             " WHERE id = ?", (ticket_id.hex(),)).fetchone()
        if invitation is None:
            raise StoreError(f"there is no invitation {ticket_id.hex()}")
        if invitation.state is not InvitationState.OPEN:
            raise StoreError(f"invitation {invitation.id_hex[:8]} is {invitation.state.value}, "
                             "so its file would let nobody in; make a new one")
        n, r, p, salt = kdf
        if salt is None:
            raise StoreError(f"invitation {invitation.id_hex[:8]} was made by an older version "
                             "that did not keep what its file needs; make a new one")
        return Ticket(
            id=ticket_id, name=invitation.name, addresses=tuple(addresses),
            fingerprint=fingerprint, expires=invitation.expires, password=invitation.password,
            kdf=Scrypt(n=n, r=r, p=p, salt=bytes(salt)), permissions=invitation.permissions)

    def invitations(self) -> list[Invitation]:
        """Every invitation, newest first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, name, created, expires, password, permissions, failed_attempts,"
                " state, ended FROM invitations ORDER BY created DESC").fetchall()
        return [self._invitation(row) for row in rows]

    def get(self, ticket_id: bytes) -> Invitation:
        with self._transaction() as db:
            invitation = self._row(db, ticket_id)
        if invitation is None:
            raise StoreError(f"there is no invitation {ticket_id.hex()}")
        return invitation

    def resolve(self, prefix: str) -> bytes:
        """The id that `prefix` (a whole id or its first digits) names; StoreError if none."""
        prefix = prefix.strip().lower()
        matches = [i.id for i in self.invitations() if prefix and i.id_hex.startswith(prefix)]
        if len(matches) != 1:
            what = "no invitation" if not matches else f"{len(matches)} invitations"
            raise StoreError(f"{what} with an id starting {prefix!r}; `ra-share status` "
                             "lists them")
        return matches[0]

    def expire(self, ticket_id: bytes) -> bool:
        """End one invitation now; False if it was not open any more."""
        return self._revoke("id = ?", (ticket_id.hex(),)) == 1

    def expire_all(self) -> int:
        """End every open invitation now; how many were ended."""
        return self._revoke("1", ())

    def _revoke(self, where: str, args: tuple[str, ...]) -> int:
        now = self.clock().timestamp()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE invitations SET state = 'revoked', ended = ?"
                f" WHERE state = 'open' AND expires > ? AND {where}", (now, now, *args))
            return cursor.rowcount

    def verify(self, ticket_id: bytes, nonce: bytes, answer: bytes) -> Invitation:
        """Check a proof against the invitation; InvitationRefused says why not.

        A wrong proof is counted in the same transaction that reads the count, so concurrent
        attempts cannot slip past the limit; the one that reaches it locks the invitation.
        """
        with self._transaction() as db:
            verdict = self._verify(db, ticket_id, nonce, answer)
        if isinstance(verdict, InvitationRefused):
            raise verdict
        return verdict

    def _verify(self, db: sqlite3.Connection, ticket_id: bytes, nonce: bytes,
                answer: bytes) -> Invitation | InvitationRefused:
        invitation = self._row(db, ticket_id)
        now = self.clock()
        if invitation is None:
            return InvitationRefused(
                Reason.UNKNOWN_INVITATION,
                "this computer does not know the invitation (it was made elsewhere or deleted); "
                "ask the novice for a new one")
        if invitation.state is InvitationState.LOCKED:
            return InvitationRefused(
                Reason.LOCKED,
                f"the invitation is locked after {MAX_FAILED_ATTEMPTS} wrong passwords; "
                "ask the novice for a new one")
        if invitation.state is InvitationState.REVOKED:
            assert invitation.ended is not None
            return InvitationRefused(
                Reason.REVOKED,
                f"the novice ended this invitation at {describe_time(invitation.ended, now)}; "
                "ask them for a new one")
        if invitation.state is InvitationState.EXPIRED:
            return InvitationRefused(
                Reason.EXPIRED,
                f"the invitation expired at {describe_time(invitation.expires, now)}; "
                "ask the novice for a new one")
        (verifier,) = db.execute("SELECT verifier FROM invitations WHERE id = ?",
                                 (ticket_id.hex(),)).fetchone()
        if hmac.compare_digest(proof(verifier, nonce, ticket_id), answer):
            return invitation
        attempts = invitation.failed_attempts + 1
        if attempts < MAX_FAILED_ATTEMPTS:
            db.execute("UPDATE invitations SET failed_attempts = ? WHERE id = ?",
                       (attempts, ticket_id.hex()))
            return InvitationRefused(
                Reason.WRONG_PASSWORD,
                f"wrong password ({MAX_FAILED_ATTEMPTS - attempts} of {MAX_FAILED_ATTEMPTS} "
                "tries left); check it with the novice and try again")
        db.execute("UPDATE invitations SET failed_attempts = ?, state = 'locked', ended = ?"
                   " WHERE id = ?", (attempts, now.timestamp(), ticket_id.hex()))
        return InvitationRefused(
            Reason.LOCKED,
            f"wrong password {attempts} times, so the invitation is now locked; "
            "ask the novice for a new one")
