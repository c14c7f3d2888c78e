"""The novice panel, driven by clicks: invitations in a private store, mail through a real SMTP
server on loopback, and the consent prompt answering a real expert over TLS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from helpers import CHEAP_KDF, FakeClock, Mailbox, attachment
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QLineEdit, QMessageBox, QPushButton
from pytestqt.qtbot import QtBot
from viewer_support import _session_loop, dialog, qt_loop, run_scenario, until  # noqa: F401

from engine.client import Client
from engine.identity import Identity
from engine.invitations import InvitationState, InvitationStore
from engine.netaddr import candidate_addresses
from engine.protocol import Permission, Reason
from engine.sharer import Sharer
from engine.tickets import MIME_TYPE, Address, Ticket
from viewer.novice import NovicePanel


@pytest.fixture
def panel(qtbot: QtBot, store: InvitationStore) -> Iterator[NovicePanel]:
    window = NovicePanel(store=store, identity=Identity.load_or_create(), name="Alice",
                         port=5950)
    qtbot.addWidget(window)
    window.show()
    yield window
    window.control_bar.close()


def fill_password(qtbot: QtBot, panel: NovicePanel, first: str, second: str) -> None:
    qtbot.keyClicks(panel.password, first)
    qtbot.keyClicks(panel.password_again, second)


def states(panel: NovicePanel) -> list[str]:
    return [panel.table.item(row, 1).text() for row in range(panel.table.rowCount())]


def test_create_and_expire_invitations(qtbot: QtBot, panel: NovicePanel,
                                       store: InvitationStore, clock: FakeClock) -> None:
    fill_password(qtbot, panel, "sesame", "sesame")
    panel.expiry.setCurrentText("2h")
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    (first,) = store.invitations()
    assert first.password and first.permissions == Permission.VIEW | Permission.CONTROL
    assert first.expires - first.created == timedelta(hours=2)
    assert states(panel) == ["open"]
    assert panel.table.item(0, 3).text() == "2h 00m"
    assert "tell the expert the password" in panel.message.text()
    assert panel.password.text() == ""

    clock.advance(minutes=1)  # the table lists the newest first
    panel.no_password.setChecked(True)
    panel.allow_control.setChecked(False)
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    newest = store.invitations()[0]
    assert not newest.password and newest.permissions == Permission.VIEW
    assert panel.table.item(0, 5).text() == "view"

    # The newest is selected: Expire ends it, and only it.
    qtbot.mouseClick(panel.expire_button, Qt.MouseButton.LeftButton)
    assert [i.state for i in store.invitations()] == [InvitationState.REVOKED,
                                                      InvitationState.OPEN]
    assert states(panel) == ["revoked", "open"]
    assert not panel.expire_button.isEnabled()
    qtbot.mouseClick(panel.expire_all_button, Qt.MouseButton.LeftButton)
    assert states(panel) == ["revoked", "revoked"]
    assert panel.message.text() == "Ended 1 open invitation."
    assert not panel.expire_all_button.isEnabled()


def test_form_mistakes_are_sentences(qtbot: QtBot, panel: NovicePanel,
                                     store: InvitationStore) -> None:
    fill_password(qtbot, panel, "sesame", "sesam")
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    assert panel.message.text() == "The two passwords differ; type them again."
    panel.password.clear()
    panel.password_again.clear()
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    assert panel.message.text() == "Type a password for the invitation, or tick No password."
    panel.no_password.setChecked(True)
    panel.expiry.setCurrentText("90d")
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    assert "30 days" in panel.message.text()
    assert store.invitations() == []


def test_time_left_counts_down(panel: NovicePanel, store: InvitationStore,
                         clock: FakeClock) -> None:
    panel.no_password.setChecked(True)
    panel.create_invitation()
    clock.advance(minutes=59, seconds=30)
    panel.refresh()
    assert panel.table.item(0, 3).text() == "30s"
    clock.advance(seconds=30)
    panel.refresh()
    assert states(panel) == ["expired"]
    assert panel.table.item(0, 3).text() == "-"


def test_save_as_file(panel: NovicePanel, tmp_path: Path) -> None:
    panel.no_password.setChecked(True)
    ticket = panel.create_invitation()
    assert ticket is not None
    assert panel.save_button.isEnabled()
    assert panel.save_invitation(ticket.id, tmp_path / "for-bob")
    assert Ticket.load(tmp_path / "for-bob.rainvite") == ticket
    assert not panel.save_invitation(ticket.id, tmp_path / "missing" / "x.rainvite")
    assert "choose another folder" in panel.message.text()


def test_an_invitation_made_elsewhere_is_saved_again(panel: NovicePanel, store: InvitationStore,
                                                    tmp_path: Path) -> None:
    """One made by `ra-share invite` or an earlier window: its file is made afresh, with this
    computer's addresses as of now."""
    ticket = store.create(name="Alice", addresses=(Address(host="192.0.2.9", port=5950),),
                          fingerprint=panel.identity.fingerprint, lifetime=timedelta(hours=1),
                          password="sesame", kdf=CHEAP_KDF)
    panel.refresh()
    panel.select(ticket.id)
    assert panel.save_button.isEnabled() and panel.email_button.isEnabled()
    assert panel.save_invitation(ticket.id, tmp_path / "again.rainvite")
    assert "and, separately, the password" in panel.message.text()
    assert Ticket.load(tmp_path / "again.rainvite") == replace(
        ticket, addresses=tuple(candidate_addresses(panel.port)))

    panel.expire_selected()
    assert not panel.save_button.isEnabled() and not panel.email_button.isEnabled()
    assert not panel.save_invitation(ticket.id, tmp_path / "late.rainvite")
    assert "so its file would let nobody in" in panel.message.text()
    assert not (tmp_path / "late.rainvite").exists()


def test_send_by_email(qtbot: QtBot, panel: NovicePanel, loop: asyncio.AbstractEventLoop,
                       smtp_server: tuple[Controller, Mailbox]) -> None:
    controller, mailbox = smtp_server
    fill_password(qtbot, panel, "sesame", "sesame")
    ticket = panel.create_invitation()
    assert ticket is not None

    async def scenario() -> None:
        qtbot.mouseClick(panel.email_button, Qt.MouseButton.LeftButton)
        form = await dialog("email")
        qtbot.keyClicks(form.recipients, "bob@example.org")
        qtbot.keyClicks(form.from_address, "alice@example.org")
        qtbot.keyClicks(form.server, f"{controller.hostname}:{controller.port}")
        send = form.findChild(QPushButton, "send")
        qtbot.mouseClick(send, Qt.MouseButton.LeftButton)
        await until(lambda: mailbox.messages, what="the mail arriving")
        await until(lambda: "Invitation sent" in panel.message.text())

    run_scenario(loop, scenario())
    (sender, recipients, mail), = mailbox.messages
    assert (sender, recipients) == ("alice@example.org", ["bob@example.org"])
    kind, _, payload = attachment(mail)
    assert kind == MIME_TYPE
    assert Ticket.from_json(payload) == ticket
    assert "sesame" not in mail.as_string()


@pytest.mark.parametrize("answer", ["Accept", "Decline"])
def test_consent_prompt_answers_the_expert(qtbot: QtBot, panel: NovicePanel,
                                           store: InvitationStore,
                                           loop: asyncio.AbstractEventLoop, answer: str) -> None:
    panel.no_password.setChecked(True)
    ticket = panel.create_invitation()
    assert ticket is not None
    sharer = Sharer(identity=panel.identity, store=store, name="Alice", events=panel.events)
    panel.attach(sharer)
    codes: list[str] = []

    async def scenario() -> None:
        await sharer.start("127.0.0.1", 0)
        local = replace(ticket, addresses=(Address(host="127.0.0.1", port=sharer.port),))
        client = Client(local, password=None, name="Bob",
                        on_consent_pending=lambda m: codes.append(m.session_code))
        connecting = asyncio.ensure_future(client.connect())
        question = await dialog("question")
        await until(lambda: codes, what="the session code reaching the expert")
        assert isinstance(question, QMessageBox)
        assert "Bob" in question.text() and codes[0] in question.text()
        (button,) = [b for b in question.buttons() if b.text() == answer]
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        if answer == "Decline":
            with pytest.raises(Exception) as refused:
                await connecting
            assert getattr(refused.value, "code", None) is Reason.DECLINED
            assert refused.value.reason == "Alice declined the connection"
        else:
            session = await connecting
            await until(lambda: panel.end_button.isEnabled(), what="the session showing")
            assert "Bob" in panel.state_label.text() and codes[0] in panel.state_label.text()
            qtbot.mouseClick(panel.end_button, Qt.MouseButton.LeftButton)
            with pytest.raises(Exception) as ended:
                await session.next_message(timeout=10)
            assert "Alice ended the session" in str(ended.value)
            await until(lambda: not panel.end_button.isEnabled(), what="the session ending")
        await sharer.close()

    run_scenario(loop, scenario())
    assert isinstance(panel.findChild(QLineEdit, "password"), QLineEdit)
