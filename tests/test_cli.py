"""`ra-share` run as the user runs it: a subprocess, with its state and config in tmp_path."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import select
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import attachment, free_port

from engine.client import Client
from engine.identity import Identity, format_fingerprint
from engine.invitations import InvitationStore
from engine.protocol import Permission
from engine.sharer import ConsentRequest, Sharer, SharerEvents
from engine.tickets import Address, Ticket, proof

RA_SHARE = Path(sys.executable).with_name("ra-share")


@pytest.fixture
def home(xdg: Path) -> Path:
    return xdg


def ra_share(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "XDG_STATE_HOME": str(home / "state"),
           "XDG_CONFIG_HOME": str(home / "config")}
    return subprocess.run([str(RA_SHARE), *args], cwd=home, env=env, capture_output=True,
                          text=True, timeout=120, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    """The failure a user sees: one sentence on stderr, nothing else."""
    assert result.returncode == status, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ra-share")
    return result.stderr


def status(home: Path) -> list[dict[str, Any]]:
    records = json.loads(ok(ra_share(home, "status", "--json")))
    assert isinstance(records, list)
    return records


def test_invite_status_expire_identity(home: Path):
    shown = ok(ra_share(home, "identity"))
    identity = Identity.load_or_create(home / "config" / "remote-assist")
    assert format_fingerprint(identity.fingerprint) in shown
    assert stat.S_IMODE(identity.path.stat().st_mode) == 0o600

    first = ra_share(home, "invite", "--no-password", "--name", "Alice", "--expires", "2h",
                     "--port", "6001", "--out", "help.rainvite")
    ok(first)
    assert "warning" in first.stderr and "no password" in first.stderr
    ticket = Ticket.load(home / "help.rainvite")
    assert (ticket.name, ticket.password) == ("Alice", False)
    assert ticket.fingerprint == identity.fingerprint
    assert ticket.addresses[-1] == Address(host="127.0.0.1", port=6001)
    assert all(a.port == 6001 for a in ticket.addresses)
    assert ticket.permissions == Permission.VIEW | Permission.CONTROL

    (home / "secret").write_text("hunter2 horse\n")
    second = ra_share(home, "invite", "--password-file", "secret", "--view-only", "--name",
                      "Alice", "--out", "view.rainvite")
    ok(second)
    assert "warning" not in second.stderr
    viewing = Ticket.load(home / "view.rainvite")
    assert viewing.password and viewing.permissions == Permission.VIEW
    assert "hunter2" not in (home / "view.rainvite").read_text()

    records = {r["id"]: r for r in status(home)}
    assert set(records) == {ticket.id_hex, viewing.id_hex}
    assert {r["state"] for r in records.values()} == {"open"}
    assert 7100 < records[ticket.id_hex]["seconds_left"] <= 7200
    assert records[viewing.id_hex]["permissions"] == ["view"]

    assert "Ended invitation" in ok(ra_share(home, "expire", ticket.id_hex[:8]))
    assert "already revoked" in ok(ra_share(home, "expire", ticket.id_hex))
    states = {r["id"]: r["state"] for r in status(home)}
    assert states == {ticket.id_hex: "revoked", viewing.id_hex: "open"}

    assert ok(ra_share(home, "expire", "--all")) == "Ended 1 open invitation.\n"
    assert {r["state"] for r in status(home)} == {"revoked"}
    table = ok(ra_share(home, "status"))
    assert table.count("revoked") == 2

    assert ok(ra_share(home, "identity")) == shown


def test_status_with_no_invitations(home: Path):
    assert "No invitations yet" in ok(ra_share(home, "status"))
    assert status(home) == []


def valid_ticket_text(home: Path) -> str:
    ok(ra_share(home, "invite", "--no-password", "--out", "good.rainvite"))
    return (home / "good.rainvite").read_text()


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda text: text[: len(text) // 2], "is cut short"),
    (lambda text: text.replace('"version": 1', '"version": 7'), "version 7 invitation"),
    (lambda text: text.replace('"fingerprint": "', '"fingerprint": "00'), "'fingerprint'"),
    (lambda text: text.replace('"name"', '"admin": true, "name"'), "unknown field 'admin'"),
    (lambda text: text.replace('"password": false', '"password": "no"'), "'password'"),
    (lambda text: "<html>not an invitation</html>", "not JSON"),
    (lambda text: "", "is empty"),
])
def test_bad_ticket_files_get_one_line(home: Path, damage: Any, expected: str):
    (home / "bad.rainvite").write_text(damage(valid_ticket_text(home)))
    error = one_line_error(ra_share(home, "show", "bad.rainvite"))
    assert error.startswith("ra-share: bad.rainvite ")
    assert expected in error


def test_binary_and_missing_ticket_files(home: Path):
    (home / "photo.rainvite").write_bytes(bytes(range(256)) * 4)
    assert "not UTF-8" in one_line_error(ra_share(home, "show", "photo.rainvite"))
    assert "cannot read" in one_line_error(ra_share(home, "show", "nowhere.rainvite"))


def test_show_a_good_ticket(home: Path):
    valid_ticket_text(home)
    shown = ok(ra_share(home, "show", "good.rainvite"))
    ticket = Ticket.load(home / "good.rainvite")
    assert ticket.id_hex in shown and format_fingerprint(ticket.fingerprint) in shown


@pytest.mark.parametrize(("args", "status_code", "expected"), [
    (["invite", "--no-password", "--expires", "5x"], 1, "cannot read the duration '5x'"),
    (["invite", "--no-password", "--expires", "90d"], 1, "one minute to 30 days"),
    (["invite", "--no-password", "--name", "a\tb"], 1, "printable"),
    (["invite", "--port", "0", "--no-password"], 2, "port number from 1 to 65535"),
    (["invite", "--no-password", "--password-prompt"], 2, "not allowed with"),
    (["invite"], 1, "say how to protect the invitation"),
    (["invite", "--password-file", "nothing-here"], 1, "cannot read the password file"),
    (["invite", "--no-password", "--email", "bob@example.org"], 1, "say which mail server"),
    (["invite", "--no-password", "--email", "b@example.org", "--smtp", "127.0.0.1:25",
      "--smtp-user", "alice", "--smtp-password-file", "pw"], 1, "unencrypted"),
    (["expire"], 2, "required"),
    (["expire", "--all", "abc"], 2, "not allowed with"),
    (["expire", "abcdef"], 1, "no invitation with an id starting 'abcdef'"),
    # Without a display there is no window to open (DISPLAY is unset for these runs).
    ([], 2, "without a command ra-share opens its window, which needs a desktop"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_mistakes_are_one_sentence_and_change_nothing(home: Path, args: list[str],
                                                      status_code: int, expected: str,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    (home / "pw").write_text("smtp secret\n")
    assert expected in one_line_error(ra_share(home, *args), status_code)
    assert status(home) == []
    assert not list(home.glob("*.rainvite"))


def test_invite_by_email(home: Path, smtp_server):
    controller, mailbox = smtp_server
    ok(ra_share(home, "invite", "--no-password", "--name", "Alice", "--out", "help.rainvite",
                "--email", "bob@example.org", "carol@example.org",
                "--smtp", f"127.0.0.1:{controller.port}", "--from", "alice@example.org"))
    ((sender, recipients, message),) = mailbox.messages
    assert (sender, recipients) == ("alice@example.org", ["bob@example.org", "carol@example.org"])
    kind, filename, data = attachment(message)
    assert (kind, filename) == ("application/x-remote-assist-invitation", "help.rainvite")
    assert data == (home / "help.rainvite").read_bytes()


def test_settings_come_from_the_config_file(home: Path, smtp_server):
    controller, mailbox = smtp_server
    config = home / "config" / "remote-assist"
    config.mkdir(parents=True)
    (config / "ra-share.ini").write_text(
        f"[invite]\nname = Carol\nexpires = 45m\nport = 6100\n\n"
        f"[smtp]\nhost = 127.0.0.1\nport = {controller.port}\nfrom = carol@example.org\n")
    ok(ra_share(home, "invite", "--no-password", "--out", "c.rainvite", "--email",
                "bob@example.org"))
    ticket = Ticket.load(home / "c.rainvite")
    assert ticket.name == "Carol" and ticket.addresses[-1].port == 6100
    ((sender, _, _),) = mailbox.messages
    assert sender == "carol@example.org"
    (record,) = status(home)
    assert 2600 < record["seconds_left"] <= 2700


def test_eml_for_a_mail_client(home: Path):
    ok(ra_share(home, "invite", "--no-password", "--out", "help.rainvite", "--eml", "mail.eml",
                "--from", "alice@example.org"))
    message = email.message_from_bytes((home / "mail.eml").read_bytes(),
                                       policy=email.policy.default)
    assert message["From"] == "alice@example.org"
    assert attachment(message)[2] == (home / "help.rainvite").read_bytes()  # type: ignore[arg-type]


def test_an_invitation_from_the_command_line_lets_the_expert_in(home: Path):
    (home / "secret").write_text("open sesame\n")
    ok(ra_share(home, "invite", "--password-file", "secret", "--name", "Alice", "--port", "6123",
                "--out", "help.rainvite"))
    ticket = Ticket.load(home / "help.rainvite")

    async def scenario() -> str:
        class Accept(SharerEvents):
            async def consent(self, request: ConsentRequest) -> bool:
                return True

        sharer = Sharer(identity=Identity.load_or_create(), store=InvitationStore(),
                        name="Alice", events=Accept())
        await sharer.start("127.0.0.1", 0)
        try:
            # Listen on any free port, and point the ticket there.
            reachable = Ticket.from_json(ticket.to_json().replace('"port": 6123',
                                                                   f'"port": {sharer.port}'))
            session = await Client(reachable, password="open sesame", name="Bob").connect()
            await session.close()
            return session.start.sharer_name
        finally:
            await sharer.close()

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == "Alice"


def test_resend_writes_and_mails_an_open_invitation_again(home: Path, smtp_server):
    controller, mailbox = smtp_server
    (home / "secret").write_text("open sesame\n")
    ok(ra_share(home, "invite", "--password-file", "secret", "--name", "Alice", "--port", "6123",
                "--view-only", "--out", "first.rainvite"))
    first = Ticket.load(home / "first.rainvite")
    (home / "first.rainvite").unlink()  # lost: the expert never got it

    shown = ok(ra_share(home, "resend", first.id_hex[:8], "--port", "6124", "--out",
                        "again.rainvite", "--email", "bob@example.org", "--smtp",
                        f"127.0.0.1:{controller.port}", "--from", "alice@example.org"))
    assert f"Invitation {first.id_hex} from Alice saved to again.rainvite" in shown
    assert "Sent to bob@example.org" in shown
    again = Ticket.load(home / "again.rainvite")
    assert again.addresses[-1] == Address(host="127.0.0.1", port=6124)
    assert again == Ticket.from_json(first.to_json().replace('"port": 6123', '"port": 6124'))
    ((_, recipients, message),) = mailbox.messages
    assert recipients == ["bob@example.org"]
    assert attachment(message)[2] == (home / "again.rainvite").read_bytes()
    nonce = b"n" * 32
    with InvitationStore() as store:
        key = again.kdf.derive("open sesame")
        assert store.verify(again.id, nonce, proof(key, nonce, again.id)).id == first.id

    ok(ra_share(home, "expire", first.id_hex))
    error = one_line_error(ra_share(home, "resend", first.id_hex, "--out", "late.rainvite"))
    assert "is revoked, so its file would let nobody in; make a new one" in error
    assert not (home / "late.rainvite").exists()
    assert "no invitation with an id starting" in one_line_error(ra_share(home, "resend", "zz"))


def test_password_prompt_on_a_terminal(home: Path):
    """The password typed twice at a terminal (a pty here; no controlling tty to steal)."""
    master, slave = os.openpty()
    env = {**os.environ, "HOME": str(home), "XDG_STATE_HOME": str(home / "state"),
           "XDG_CONFIG_HOME": str(home / "config")}
    child = subprocess.Popen([str(RA_SHARE), "invite", "--password-prompt", "--out", "p.rainvite"],
                             cwd=home, env=env, stdin=slave, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    os.close(slave)
    assert child.stderr is not None
    try:
        for prompt in (b"Password for the invitation: ", b"The same password again: "):
            seen = b""
            while not seen.endswith(prompt):
                ready, _, _ = select.select([child.stderr], [], [], 60)
                assert ready, f"no prompt; got {seen!r}"
                byte = os.read(child.stderr.fileno(), 1)
                assert byte, f"ra-share ended early: {seen!r}"
                seen += byte
            os.write(master, b"typed secret\n")
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
        os.close(master)
    ticket = Ticket.load(home / "p.rainvite")
    assert ticket.password
    key = ticket.kdf.derive("typed secret")
    nonce = b"n" * 32
    with InvitationStore() as store:
        assert store.verify(ticket.id, nonce, proof(key, nonce, ticket.id)).id == ticket.id


def test_serve_refuses_an_invitation_that_is_not_open(home: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DISPLAY", ":99")  # checked before the display is opened
    ok(ra_share(home, "invite", "--no-password", "--out", "a.rainvite"))
    (record,) = status(home)
    ok(ra_share(home, "expire", record["id"][:8]))
    error = one_line_error(ra_share(home, "serve", "--invitation", record["id"][:8]))
    assert f"invitation {record['id']} is revoked; make a new one" in error


def test_serve_needs_a_display(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    error = one_line_error(ra_share(home, "serve", "--no-password", "--invite-out", "b.rainvite"))
    assert "there is no display to share" in error
    assert status(home) == []


@pytest.mark.parametrize("flag", [["--monitor", "0"], ["--monitor", "left"],
                                  ["--max-fps", "0"], ["--max-fps", "fast"]])
def test_serve_rejects_bad_options(home: Path, flag: list[str]):
    error = one_line_error(ra_share(home, "serve", "--no-password", *flag), status=2)
    assert flag[0] in error


def test_serve_on_a_busy_port_wastes_no_invitation(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DISPLAY", ":99")  # not opened before an expert connects
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = one_line_error(ra_share(home, "serve", "--no-password", "--bind", "127.0.0.1",
                                        "--port", str(port)))
    assert f"cannot listen on port {port}" in error
    assert status(home) == []


def test_bare_ra_share_on_a_desktop_opens_the_novice_panel(home: Path, xvfb):
    env = {**xvfb.environ(), "HOME": str(home), "XDG_STATE_HOME": str(home / "state"),
           "XDG_CONFIG_HOME": str(home / "config"), "QT_QPA_PLATFORM": "xcb"}
    (home / "config" / "remote-assist").mkdir(parents=True)
    (home / "config" / "remote-assist" / "ra-share.ini").write_text(
        f"[invite]\nname = Alice\nport = {free_port()}\n")
    panel = subprocess.Popen([str(RA_SHARE)], cwd=home, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--classname",
                                "ra-share", "getwindowname", "%@"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert "Remote Assistance: Alice" in found.stdout, (found.stdout, found.stderr)
    finally:
        panel.terminate()
        panel.wait(30)
