"""Ticket files, the password proof, and the novice's invitation store."""

from __future__ import annotations

import base64
import ipaddress
import json
import multiprocessing
import socket
import sqlite3
import stat
import unicodedata
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import CHEAP_KDF, FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.invitations import (
    MAX_FAILED_ATTEMPTS,
    InvitationRefused,
    InvitationState,
    InvitationStore,
    StoreError,
    default_store_path,
)
from engine.netaddr import candidate_addresses
from engine.protocol import Permission, Reason
from engine.tickets import (
    MAX_TICKET_BYTES,
    Address,
    Scrypt,
    Ticket,
    TicketError,
    proof,
)

FINGERPRINT = "ab" * 32
LOOPBACK = (Address(host="127.0.0.1", port=5950),)
NONCE = b"\x07" * 32
# The table as its first version made it, before scrypt's parameters and salt were kept.
INVITATIONS_V1 = """
CREATE TABLE invitations (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL,
    verifier BLOB NOT NULL, password INTEGER NOT NULL, permissions INTEGER NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('open', 'revoked', 'locked')), ended REAL
)
"""


def make_ticket(**changes: Any) -> Ticket:
    fields: dict[str, Any] = {
        "id": bytes(range(16)), "name": "Alice", "addresses": LOOPBACK,
        "fingerprint": FINGERPRINT,
        "expires": datetime(2030, 5, 1, 14, 2, tzinfo=timezone.utc), "password": True,
        "kdf": Scrypt(n=2**15, r=8, p=1, salt=b"s" * 16),
        "permissions": Permission.VIEW | Permission.CONTROL,
    }
    fields.update(changes)
    return Ticket(**fields)


def document(**changes: Any) -> dict[str, Any]:
    doc = json.loads(make_ticket().to_json())
    doc.update(changes)
    return doc


def refusal(data: bytes | str) -> str:
    with pytest.raises(TicketError) as error:
        Ticket.from_json(data, "help.rainvite")
    text = str(error.value)
    assert "\n" not in text and text.startswith("help.rainvite ")
    return text


# ---------------------------------------------------------------- the file format

names = st.text(st.characters(codec="utf-8", categories=["L", "N", "P"], include_characters=" "),
                min_size=1, max_size=64).filter(str.strip)
hosts = st.one_of(st.ip_addresses().map(str),
                  st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?\.example", fullmatch=True))
addresses = st.lists(st.builds(Address, host=hosts, port=st.integers(1, 65535)),
                     min_size=1, max_size=32).map(tuple)


@given(name=names, addrs=addresses, password=st.booleans(),
       control=st.booleans(), seconds=st.integers(0, 2**34), salt=st.binary(min_size=16,
                                                                            max_size=64))
@settings(max_examples=200, deadline=None)
def test_tickets_roundtrip(name, addrs, password, control, seconds, salt):
    ticket = make_ticket(
        name=name, addresses=addrs, password=password,
        expires=datetime.fromtimestamp(seconds, timezone.utc),
        permissions=Permission.VIEW | (Permission.CONTROL if control else Permission(0)),
        kdf=Scrypt(n=2**14, r=8, p=2, salt=salt))
    assert Ticket.from_json(ticket.to_json()) == ticket
    assert Ticket.from_json(ticket.to_json().encode()) == ticket


def test_save_and_load(tmp_path: Path):
    path = tmp_path / "help.rainvite"
    make_ticket().save(path)
    assert Ticket.load(path) == make_ticket()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["help.rainvite"]


def test_load_names_the_file(tmp_path: Path):
    with pytest.raises(TicketError, match=r"cannot read .*missing\.rainvite"):
        Ticket.load(tmp_path / "missing.rainvite")
    (tmp_path / "bad.rainvite").write_text("{}")
    with pytest.raises(TicketError, match=r"^bad\.rainvite is not a remote-assist invitation"):
        Ticket.load(tmp_path / "bad.rainvite")


def test_every_cut_is_reported_as_truncated():
    text = make_ticket(name="Zoë").to_json().rstrip()
    for cut in range(1, len(text)):
        assert "cut short" in refusal(text[:cut]), text[:cut]
    data = text.encode()
    cut = data.index("ë".encode()) + 1
    assert "cut short" in refusal(data[:cut])


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "is empty"),
    (b" \n", "is empty"),
    (b"hello, world", "not JSON"),
    (b"{\"format\": nope}", "not JSON"),
    (bytes(range(256)), "not UTF-8"),
    (b"[1, 2]", "not a JSON object"),
    (b"{\"title\": \"minutes\"}", "no format and version marks"),
    (b"{" + b" " * MAX_TICKET_BYTES + b"}", "over 64 KiB"),
])
def test_not_an_invitation(data, expected):
    assert expected in refusal(data)


def test_future_version_asks_for_an_update():
    text = refusal(json.dumps(document(version=2, newfield="x")))
    assert "version 2 invitation" in text and "update remote-assist" in text


def tamper(**changes: Any) -> str:
    return refusal(json.dumps(document(**changes)))


@pytest.mark.parametrize(("changes", "expected"), [
    ({"version": "1"}, "version"),
    ({"version": 0}, "version"),
    ({"extra": 1}, "unknown field 'extra'"),
    ({"id": "00" * 15}, "'id'"),
    ({"id": "AB" * 16}, "'id'"),
    ({"id": 5}, "'id' must be text"),
    ({"name": ""}, "name"),
    ({"name": "Alice\nClick OK"}, "printable"),
    ({"name": "x" * 65}, "name"),
    ({"name": None}, "'name' must be text"),
    ({"addresses": []}, "addresses"),
    ({"addresses": "127.0.0.1:5950"}, "addresses"),
    ({"addresses": [["127.0.0.1", 5950]]}, "host and a port"),
    ({"addresses": [{"host": "127.0.0.1"}]}, "'addresses.port' is missing"),
    ({"addresses": [{"host": "127.0.0.1", "port": 1, "via": "x"}]}, "'addresses.via'"),
    ({"addresses": [{"host": "127.0.0.1", "port": 0}]}, "not a valid address"),
    ({"addresses": [{"host": "127.0.0.1", "port": "5950"}]}, "whole number"),
    ({"addresses": [{"host": "127.0.0.1", "port": True}]}, "whole number"),
    ({"addresses": [{"host": "bad host!", "port": 1}]}, "not a valid address"),
    ({"fingerprint": "ab" * 31}, "fingerprint"),
    ({"fingerprint": "AB" * 32}, "fingerprint"),
    ({"fingerprint": "zz" * 32}, "fingerprint"),
    ({"expires": "tomorrow"}, "expires"),
    ({"expires": "2030-05-01T14:02:00+02:00"}, "expires"),
    ({"expires": 1900000000}, "expires"),
    ({"password": "yes"}, "'password' must be true or false"),
    ({"password": 1}, "'password'"),
    ({"kdf": "scrypt"}, "'kdf' must be an object"),
    ({"permissions": ["control"]}, "permissions"),
    ({"permissions": ["view", "view"]}, "permissions"),
    ({"permissions": ["view", "admin"]}, "permissions"),
    ({"permissions": "view"}, "permissions"),
    ({"permissions": [["view"]]}, "permissions"),
])
def test_tampered_fields_are_named(changes, expected):
    text = tamper(**changes)
    assert "damaged or altered" in text and expected in text


def test_missing_field_is_named():
    doc = document()
    del doc["fingerprint"]
    assert "'fingerprint' is missing" in refusal(json.dumps(doc))


@pytest.mark.parametrize(("kdf", "expected"), [
    ({"n": 1000}, "power of two"),
    ({"n": 2**9}, "power of two"),
    ({"n": 2**24}, "more work"),
    ({"r": 0}, "r must be"),
    ({"p": 64}, "p 1 to 16"),
    ({"n": 2.5}, "'kdf.n' must be a whole number"),
    ({"salt": "not base64!"}, "base64"),
    ({"salt": base64.b64encode(b"short").decode()}, "salt"),
    ({"name": "argon2"}, "scrypt"),
    ({"cost": 1}, "'kdf.cost'"),
])
def test_hostile_kdf_parameters_are_refused(kdf, expected):
    params = document()["kdf"]
    params.update(kdf)
    assert expected in tamper(kdf=params)


def test_the_file_never_holds_the_password_or_its_verifier(xdg: Path):
    store = InvitationStore(clock=FakeClock())
    ticket = store.create(name="Alice", addresses=LOOPBACK, fingerprint=FINGERPRINT,
                          lifetime=timedelta(hours=1), password="correct horse", kdf=CHEAP_KDF)
    text = ticket.to_json()
    with sqlite3.connect(store.path) as db:
        (verifier,) = db.execute("SELECT verifier FROM invitations").fetchone()
    assert verifier == ticket.kdf.derive("correct horse")
    for secret in ("correct horse", verifier.hex(), base64.b64encode(verifier).decode()):
        assert secret not in text


# ---------------------------------------------------------------- the proof


def test_key_derivation_normalises_unicode():
    kdf = CHEAP_KDF.with_new_salt()
    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    assert kdf.derive(composed) == kdf.derive(decomposed)
    assert kdf.derive(composed) != kdf.derive("cafe")
    assert kdf.derive("x") != kdf.with_new_salt().derive("x")


def test_proof_binds_nonce_and_ticket():
    key = CHEAP_KDF.with_new_salt().derive("pw")
    base = proof(key, NONCE, b"a" * 16)
    assert len(base) == 32
    assert base != proof(key, b"\x08" * 32, b"a" * 16)
    assert base != proof(key, NONCE, b"b" * 16)
    assert base != proof(b"k" * 32, NONCE, b"a" * 16)


def test_default_scrypt_cost_is_within_the_accepted_bounds():
    assert Scrypt(salt=b"s" * 16).problem() is None
    assert Scrypt().memory == 32 * 1024 * 1024


# ---------------------------------------------------------------- the store


def invite(store: InvitationStore, password: str | None = "pw", **kw: Any) -> Ticket:
    kw.setdefault("lifetime", timedelta(hours=1))
    kw.setdefault("kdf", CHEAP_KDF)
    return store.create(name="Alice", addresses=LOOPBACK, fingerprint=FINGERPRINT,
                        password=password, **kw)


def answer(ticket: Ticket, password: str, nonce: bytes = NONCE) -> bytes:
    return proof(ticket.kdf.derive(password), nonce, ticket.id)


def refused(store: InvitationStore, ticket: Ticket, password: str) -> InvitationRefused:
    with pytest.raises(InvitationRefused) as error:
        store.verify(ticket.id, NONCE, answer(ticket, password))
    assert "\n" not in error.value.reason
    return error.value


def test_store_lives_in_the_state_dir_owner_only(store: InvitationStore, xdg: Path):
    assert store.path == default_store_path()
    assert store.path.is_relative_to(xdg / "state")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_a_new_invitation_is_open(store: InvitationStore, clock: FakeClock):
    ticket = invite(store, lifetime=timedelta(minutes=30), permissions=Permission.VIEW)
    invitation = store.get(ticket.id)
    assert invitation.state is InvitationState.OPEN
    assert invitation.failed_attempts == 0
    assert invitation.permissions == Permission.VIEW == ticket.permissions
    assert invitation.expires == ticket.expires == clock.now + timedelta(minutes=30)
    assert invitation.time_left(clock.now) == timedelta(minutes=30)
    assert store.verify(ticket.id, NONCE, answer(ticket, "pw")) == invitation


def test_no_password_still_proves_holding_the_ticket(store: InvitationStore):
    ticket = invite(store, password=None)
    assert not ticket.password
    assert store.verify(ticket.id, NONCE, answer(ticket, "")).id == ticket.id
    assert refused(store, ticket, "guess").code is Reason.WRONG_PASSWORD


def test_a_proof_for_another_nonce_is_refused(store: InvitationStore):
    ticket = invite(store)
    replayed = answer(ticket, "pw", nonce=b"\x01" * 32)
    with pytest.raises(InvitationRefused):
        store.verify(ticket.id, NONCE, replayed)


def test_wrong_passwords_count_and_the_fifth_locks(store: InvitationStore):
    ticket = invite(store)
    for attempt in range(1, MAX_FAILED_ATTEMPTS):
        error = refused(store, ticket, "nope")
        assert error.code is Reason.WRONG_PASSWORD
        left = MAX_FAILED_ATTEMPTS - attempt
        assert f"{left} of {MAX_FAILED_ATTEMPTS} tries left" in error.reason
        assert store.get(ticket.id).failed_attempts == attempt
        assert store.get(ticket.id).state is InvitationState.OPEN
    fifth = refused(store, ticket, "nope")
    assert fifth.code is Reason.LOCKED and "now locked" in fifth.reason
    assert store.get(ticket.id).state is InvitationState.LOCKED
    # Locked means locked: the right password no longer opens it, and is not counted.
    after = refused(store, ticket, "pw")
    assert after.code is Reason.LOCKED and "is locked" in after.reason
    assert store.get(ticket.id).failed_attempts == MAX_FAILED_ATTEMPTS


def test_expiry_follows_the_injected_clock(store: InvitationStore, clock: FakeClock):
    ticket = invite(store, lifetime=timedelta(minutes=10))
    clock.advance(minutes=9, seconds=59)
    assert store.get(ticket.id).state is InvitationState.OPEN
    clock.advance(seconds=1)
    invitation = store.get(ticket.id)
    assert invitation.state is InvitationState.EXPIRED
    assert invitation.time_left(clock.now) == timedelta(0)
    error = refused(store, ticket, "pw")
    assert error.code is Reason.EXPIRED
    assert "expired at 12:10 UTC" in error.reason and "new one" in error.reason
    assert store.get(ticket.id).failed_attempts == 0
    clock.advance(days=2)
    assert "expired at 2030-05-01 12:10 UTC" in refused(store, ticket, "pw").reason


def test_expire_one(store: InvitationStore, clock: FakeClock):
    ended, kept = invite(store), invite(store)
    clock.advance(minutes=5)
    assert store.expire(ended.id)
    assert not store.expire(ended.id)
    assert store.get(ended.id).state is InvitationState.REVOKED
    assert store.get(ended.id).ended == clock.now
    assert store.get(kept.id).state is InvitationState.OPEN
    error = refused(store, ended, "pw")
    assert error.code is Reason.REVOKED and "ended this invitation at 12:05 UTC" in error.reason


def test_expire_all_ends_only_open_ones(store: InvitationStore, clock: FakeClock):
    short = invite(store, lifetime=timedelta(minutes=1))
    locked = invite(store)
    for _ in range(MAX_FAILED_ATTEMPTS):
        refused(store, locked, "x")
    open_ones = [invite(store) for _ in range(3)]
    clock.advance(minutes=2)
    assert store.expire_all() == 3
    assert store.expire_all() == 0
    states = {i.id: i.state for i in store.invitations()}
    assert states[short.id] is InvitationState.EXPIRED
    assert states[locked.id] is InvitationState.LOCKED
    assert all(states[t.id] is InvitationState.REVOKED for t in open_ones)


def test_unknown_invitation(store: InvitationStore):
    ticket = invite(store)
    with pytest.raises(InvitationRefused) as error:
        store.verify(b"\0" * 16, NONCE, answer(ticket, "pw"))
    assert error.value.code is Reason.UNKNOWN_INVITATION
    assert "does not know the invitation" in error.value.reason


def test_the_store_survives_a_restart(xdg: Path, clock: FakeClock):
    with InvitationStore(clock=clock) as first:
        ticket = invite(first)
        refused(first, ticket, "nope")
    with InvitationStore(clock=clock) as second:
        assert second.get(ticket.id).failed_attempts == 1
        assert second.verify(ticket.id, NONCE, answer(ticket, "pw")).id == ticket.id


def test_resolve_an_id_prefix(store: InvitationStore):
    ticket = invite(store)
    assert store.resolve(ticket.id_hex) == ticket.id
    assert store.resolve(ticket.id_hex[:6].upper()) == ticket.id
    with pytest.raises(StoreError, match="no invitation with an id starting"):
        store.resolve("zz")
    with pytest.raises(StoreError, match="no invitation"):
        store.resolve("")
    # Sixteen more ids: two of the seventeen must share their first digit.
    ids = [ticket.id_hex] + [invite(store).id_hex for _ in range(16)]
    digit = next(d for d in "0123456789abcdef" if sum(i.startswith(d) for i in ids) >= 2)
    with pytest.raises(StoreError, match=r"\d+ invitations with an id starting"):
        store.resolve(digit)


def test_an_open_invitation_gives_its_file_again(store: InvitationStore, clock: FakeClock):
    ticket = invite(store, permissions=Permission.VIEW)
    moved = (Address(host="192.0.2.7", port=6000),)
    again = store.ticket(ticket.id, addresses=moved, fingerprint="cd" * 32)
    assert again == replace(ticket, addresses=moved, fingerprint="cd" * 32)
    # The expert who holds the new file proves the same password to the same store.
    assert store.verify(again.id, NONCE, answer(again, "pw")).id == ticket.id
    assert refused(store, again, "wrong").code is Reason.WRONG_PASSWORD

    store.expire(ticket.id)
    with pytest.raises(StoreError, match="is revoked, so its file would let nobody in"):
        store.ticket(ticket.id, addresses=LOOPBACK, fingerprint=FINGERPRINT)
    late = invite(store)
    clock.advance(hours=2)
    with pytest.raises(StoreError, match="is expired"):
        store.ticket(late.id, addresses=LOOPBACK, fingerprint=FINGERPRINT)
    with pytest.raises(StoreError, match="there is no invitation"):
        store.ticket(b"\0" * 16, addresses=LOOPBACK, fingerprint=FINGERPRINT)


def test_a_store_from_before_the_kdf_was_kept(xdg: Path, clock: FakeClock):
    """A store made by the first version of the table opens, keeps working, and says why an
    invitation it made cannot give its file again."""
    path = default_store_path()
    path.parent.mkdir(parents=True)
    ticket = make_ticket(kdf=CHEAP_KDF.with_new_salt(),
                         expires=clock.now.replace(microsecond=0) + timedelta(hours=1))
    with sqlite3.connect(path) as db:
        db.execute(INVITATIONS_V1)
        db.execute("INSERT INTO invitations (id, name, created, expires, verifier, password,"
                   " permissions, state) VALUES (?, 'Alice', ?, ?, ?, 1, 3, 'open')",
                   (ticket.id_hex, clock.now.timestamp(), ticket.expires.timestamp(),
                    ticket.kdf.derive("pw")))
    db.close()
    with InvitationStore(clock=clock) as store:
        (old,) = store.invitations()
        assert old.state is InvitationState.OPEN
        assert store.verify(ticket.id, NONCE, answer(ticket, "pw")).id == ticket.id
        with pytest.raises(StoreError, match="made by an older version"):
            store.ticket(ticket.id, addresses=LOOPBACK, fingerprint=FINGERPRINT)
        new = invite(store)
        assert store.ticket(new.id, addresses=LOOPBACK, fingerprint=FINGERPRINT) == new


def test_a_damaged_store_is_a_sentence(xdg: Path):
    path = default_store_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as error:
        InvitationStore()
    assert "move it away" in str(error.value) and "\n" not in str(error.value)


def _hammer(path: str, ticket_json: str, rounds: int, results: Any) -> None:
    """One ra-share process: make invitations and try wrong passwords on a shared one."""
    ticket = Ticket.from_json(ticket_json)
    store = InvitationStore(path)
    codes = []
    for _ in range(rounds):
        invite(store)
        try:
            store.verify(ticket.id, NONCE, answer(ticket, "wrong"))
        except InvitationRefused as refusal:
            codes.append((int(refusal.code), "now locked" in refusal.reason))
    store.close()
    results.put(codes)


def test_concurrent_processes_count_every_attempt_once(store: InvitationStore):
    shared = invite(store)
    processes, rounds = 4, 10
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_hammer,
                               args=(str(store.path), shared.to_json(), rounds, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [code for _ in workers for code in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(outcomes) == processes * rounds
    wrong = outcomes.count((Reason.WRONG_PASSWORD, False))
    locking = outcomes.count((Reason.LOCKED, True))
    already = outcomes.count((Reason.LOCKED, False))
    assert (wrong, locking, already) == (MAX_FAILED_ATTEMPTS - 1, 1,
                                         processes * rounds - MAX_FAILED_ATTEMPTS)
    assert store.get(shared.id).failed_attempts == MAX_FAILED_ATTEMPTS
    assert len(store.invitations()) == 1 + processes * rounds
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_store_makes_only_tickets_a_viewer_accepts(store: InvitationStore):
    with pytest.raises(ValueError, match="power of two"):
        invite(store, kdf=Scrypt(n=1000))
    with pytest.raises(ValueError, match="positive lifetime"):
        invite(store, lifetime=timedelta(0))
    assert store.invitations() == []


def test_candidate_addresses_are_this_hosts_and_end_with_loopback():
    candidates = candidate_addresses(5950)
    assert candidates[-1] == Address(host="127.0.0.1", port=5950)
    for address in candidates[:-1]:
        ip = ipaddress.ip_address(address.host)
        assert not (ip.is_loopback or ip.is_link_local or ip.is_multicast)
        # Only an address of this host can be bound.
        with socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET) as probe:
            probe.bind((address.host, 0))
    ticket = make_ticket(addresses=tuple(candidates))
    assert Ticket.from_json(ticket.to_json()).addresses == tuple(candidates)
