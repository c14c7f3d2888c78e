"""Both windows in one process, offscreen, over real TLS on 127.0.0.1: the expert's window asks
for control, the novice's panel grants it, clicks and keys on the canvas reach a real X client
on a private Xvfb, and the panel's Stop Control ends it for both."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import invitation
from PyQt6.QtCore import QPoint, Qt
from PyQt6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot
from viewer_support import (  # noqa: F401
    _session_loop,
    dialog,
    move_mouse,
    qt_loop,
    run_scenario,
    until,
)
from xclient import Xev

from engine.capture import ScreenSource
from engine.identity import Identity
from engine.invitations import InvitationStore
from engine.sharer import Sharer
from engine.xvfb import Xvfb
from viewer.expert import ExpertWindow
from viewer.novice import NovicePanel


@pytest.fixture
def windows(qtbot: QtBot, store: InvitationStore,
            identity: Identity) -> Iterator[tuple[ExpertWindow, NovicePanel]]:
    expert = ExpertWindow("Bob")
    panel = NovicePanel(store=store, identity=identity, name="Alice", port=0)
    for window in (expert, panel):
        qtbot.addWidget(window)
        window.show()
    yield expert, panel
    panel.control_bar.close()


async def answer(qtbot: QtBot, label: str) -> str:
    """Click `label` in the panel's question; the question's text."""
    question = await dialog("question")
    assert isinstance(question, QMessageBox)
    (choice,) = [b for b in question.buttons() if b.text() == label]
    text = question.text()
    qtbot.mouseClick(choice, Qt.MouseButton.LeftButton)
    return text


def test_take_control_type_and_stop(qtbot: QtBot, windows: tuple[ExpertWindow, NovicePanel],
                                    store: InvitationStore, identity: Identity, xvfb: Xvfb,
                                    tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    expert, panel = windows
    canvas = expert.view.canvas

    async def scenario(xev: Xev) -> None:
        sharer = Sharer(identity=identity, store=store, name="Alice", events=panel.events,
                        source=lambda: ScreenSource(xvfb.display), display=xvfb.display)
        panel.attach(sharer)
        await sharer.start("127.0.0.1", 0)
        try:
            path = tmp_path / "alice.rainvite"
            invitation(store, identity, sharer.port, password=None).save(path)
            opening = asyncio.ensure_future(expert.open_ticket(path))
            consent = await answer(qtbot, "Accept")
            assert "Bob" in consent
            await until(lambda: canvas.framebuffer is not None, what="the first frame")
            expert.actual_action.trigger()  # 1:1: canvas pixels are screen pixels
            assert expert.control_label.text() == "Viewing only"

            # Nothing goes through before the novice agrees.
            qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(20, 20))
            qtbot.mouseClick(expert.control_button, Qt.MouseButton.LeftButton)
            assert not expert.control_button.isEnabled()
            prompt = await answer(qtbot, "Let Bob Take Control")
            assert "Esc" in prompt and "Ctrl+C" in prompt and "Stop Control" in prompt
            await until(lambda: canvas.controlling, what="control reaching the expert")
            assert expert.control_label.text() == "You are controlling Alice's computer"
            assert expert.control_button.text() == "Release Control"
            await until(lambda: panel.controlled, what="the panel showing the driver")
            assert panel.driving_label.isVisible() and panel.stop_button.isEnabled()
            assert "Bob is controlling your computer" in panel.driving_label.text()
            assert panel.control_bar.isVisible()

            move_mouse(canvas, QPoint(200, 150))
            qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(200, 150))
            qtbot.keyClick(canvas, Qt.Key.Key_A)
            qtbot.keyClick(canvas, Qt.Key.Key_F12)
            events = await asyncio.to_thread(xev.until, "F12")
            clicks = [(e.kind, e.button, e.x, e.y) for e in events
                      if e.kind.startswith("Button")]
            assert clicks == [("ButtonPress", 1, 200, 150), ("ButtonRelease", 1, 200, 150)]
            assert [e.name for e in events if e.kind == "KeyPress"] == ["a", "F12"]

            # The expert gives control back; the panel clears its warning.
            qtbot.mouseClick(expert.control_button, Qt.MouseButton.LeftButton)
            assert not canvas.controlling and expert.control_label.text() == "Viewing only"
            await until(lambda: not panel.controlled, what="the panel seeing control end")
            assert not panel.driving_label.isVisible() and not panel.stop_button.isEnabled()

            # Again, and this time the novice stops it.
            qtbot.mouseClick(expert.control_button, Qt.MouseButton.LeftButton)
            await answer(qtbot, "Let Bob Take Control")
            await until(lambda: canvas.controlling and panel.controlled,
                        what="control granted again")
            qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
            assert not panel.controlled and not panel.control_bar.isVisible()
            await until(lambda: not canvas.controlling, what="the expert losing control")
            assert expert.control_label.text() == "Viewing only"
            assert expert.control_button.text() == "Take Control"
            assert expert.control_button.isEnabled()

            qtbot.mouseClick(panel.end_button, Qt.MouseButton.LeftButton)
            await opening
            assert expert.peer_label.text() == "Not connected"
            assert "Alice ended the session" in expert.statusBar().currentMessage()
        finally:
            await sharer.close()

    with Xev(xvfb) as xev:
        run_scenario(loop, scenario(xev))
