"""The expert's window against a real sharer over TLS on 127.0.0.1: the password dialog, every
refusal as a readable dialog, and a live session whose canvas shows a private Xvfb's pixels."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import mss
import numpy as np
import pytest
from helpers import FakeClock, free_port, invitation
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QDialogButtonBox, QInputDialog, QLineEdit
from pytestqt.qtbot import QtBot
from viewer_support import _session_loop, dialog, message, qt_loop, run_scenario, until  # noqa: F401

from engine.capture import ScreenSource
from engine.identity import Identity
from engine.invitations import InvitationStore
from engine.protocol import Chat
from engine.sharer import ConsentRequest, Sharer, SharerEvents
from engine.tickets import Ticket
from engine.xvfb import Xvfb
from viewer.expert import ExpertWindow, main


class Novice(SharerEvents):
    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.chats: list[Chat] = []

    async def consent(self, request: ConsentRequest) -> bool:
        return self.accept

    def chat(self, message: Chat) -> None:
        self.chats.append(message)


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[ExpertWindow]:
    expert = ExpertWindow("Bob")
    qtbot.addWidget(expert)
    expert.show()
    yield expert


@contextlib.asynccontextmanager
async def sharing(store: InvitationStore, identity: Identity, novice: SharerEvents,
                  display: str | None = None) -> AsyncIterator[Sharer]:
    source = None if display is None else (lambda: ScreenSource(display))
    sharer = Sharer(identity=identity, store=store, name="Alice", events=novice, source=source)
    await sharer.start("127.0.0.1", 0)
    try:
        yield sharer
    finally:
        await sharer.close()


def saved(ticket: Ticket, tmp_path: Path) -> Path:
    path = tmp_path / "alice.rainvite"
    ticket.save(path)
    return path


async def type_password(qtbot: QtBot, password: str) -> str:
    """Answer the password dialog; the label it showed."""
    box = await dialog("password")
    assert isinstance(box, QInputDialog)
    entry = box.findChild(QLineEdit)
    assert entry is not None and entry.echoMode() == QLineEdit.EchoMode.Password
    qtbot.keyClicks(entry, password)
    buttons = box.findChild(QDialogButtonBox)
    assert buttons is not None
    qtbot.mouseClick(buttons.button(QDialogButtonBox.StandardButton.Ok),
                     Qt.MouseButton.LeftButton)
    return box.labelText()


def test_wrong_password_asks_again_with_the_tries_left(
        qtbot: QtBot, window: ExpertWindow, store: InvitationStore, identity: Identity,
        tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    async def scenario() -> None:
        async with sharing(store, identity, Novice()) as sharer:
            path = saved(invitation(store, identity, sharer.port), tmp_path)
            opening = asyncio.ensure_future(window.open_ticket(path))
            first = await type_password(qtbot, "wrong")
            assert first == "The password Alice gave you for this invitation:"
            second = await type_password(qtbot, "also wrong")
            assert second == ("Wrong password (4 of 5 tries left); check it with the novice "
                              "and try again.")
            box = await dialog("password")
            assert isinstance(box, QInputDialog)
            assert box.labelText().startswith("Wrong password (3 of 5 tries left)")
            box.reject()
            await opening
        assert window.statusBar().currentMessage() == "Not connected: no password was typed."
        assert window.peer_label.text() == "Not connected"

    run_scenario(loop, scenario())


REFUSALS = {
    "expired": ("The invitation has expired", "The invitation expired at"),
    "revoked": ("The invitation was ended", "The novice ended this invitation at"),
    "declined": ("The novice declined", "Alice declined the connection; talk to Alice"),
    "unreachable": ("Cannot connect", "Could not reach Alice's computer"),
    "impostor": ("Cannot connect safely", "is not the one that made this invitation"),
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_each_refusal_is_a_dialog_that_says_what_to_do(
        qtbot: QtBot, window: ExpertWindow, store: InvitationStore, identity: Identity,
        clock: FakeClock, tmp_path: Path, loop: asyncio.AbstractEventLoop,
        refusal: str) -> None:
    title, words = REFUSALS[refusal]

    async def scenario() -> None:
        async with sharing(store, identity, Novice(accept=refusal != "declined")) as sharer:
            port = free_port() if refusal == "unreachable" else sharer.port
            ticket = invitation(store, identity, port, password=None)
            if refusal == "expired":
                clock.advance(hours=2)
            elif refusal == "revoked":
                store.expire(ticket.id)
            elif refusal == "impostor":
                other = Identity.load_or_create(tmp_path / "other")
                ticket = replace(ticket, fingerprint=other.fingerprint)
            opening = asyncio.ensure_future(window.open_ticket(saved(ticket, tmp_path)))
            box = await message()
            assert box.windowTitle() == title
            assert words in box.text()
            # One sentence that ends by saying what to do next.
            assert box.text()[0].isupper()
            assert any(advice in box.text() for advice in ("ask", "check", "try", "again"))
            assert window.statusBar().currentMessage().startswith("Not connected: ")
            box.accept()
            await opening

    run_scenario(loop, scenario())


def test_a_damaged_file_is_a_dialog(qtbot: QtBot, window: ExpertWindow, tmp_path: Path,
                                    loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "broken.rainvite"
    path.write_text('{"format": "remote-assist-invitation", "version": 1}')

    async def scenario() -> None:
        opening = asyncio.ensure_future(window.open_ticket(path))
        box = await message()
        assert box.windowTitle() == "Cannot open the invitation"
        assert box.text() == ("broken.rainvite has been damaged or altered: the field 'id' is "
                              "missing; ask the novice for a new invitation")
        box.accept()
        await opening

    run_scenario(loop, scenario())


def screen(display: str) -> np.ndarray:
    """The display's pixels now, BGR, grabbed independently of the sharer."""
    with mss.MSS(display=display) as grabber:
        shot = grabber.grab(grabber.monitors[0])
        return np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4)[..., :3]


def canvas_pixels(window: ExpertWindow) -> np.ndarray:
    """What the canvas paints, as BGR, grabbed from the widget."""
    image = window.view.canvas.grab().toImage().convertToFormat(
        window.view.canvas.grab().toImage().Format.Format_RGB32)
    height, width = image.height(), image.width()
    data = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
    return data.reshape(height, image.bytesPerLine() // 4, 4)[:, :width, :3]


def same_but_cursor(window: ExpertWindow, display: str) -> bool:
    """The canvas shows the display's pixels, apart from the remote cursor drawn over them."""
    shown, actual = canvas_pixels(window).copy(), screen(display).copy()
    if shown.shape != actual.shape:
        return False
    area = window.view.canvas.cursor_rect()
    if area is not None:  # mss grabs without the pointer; the canvas draws it
        for pixels in (shown, actual):
            pixels[max(area.top(), 0):area.bottom() + 1, max(area.left(), 0):area.right() + 1] = 0
    return bool(np.array_equal(shown, actual))


def paint(server: Xvfb, colour: str) -> None:
    subprocess.run(["xsetroot", "-solid", colour], env=server.environ(), check=True,
                   timeout=20)


def test_a_live_session_shows_the_novice_screen(
        qtbot: QtBot, window: ExpertWindow, store: InvitationStore, identity: Identity,
        xvfb: Xvfb, tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    novice = Novice()
    paint(xvfb, "#204080")
    xterm = subprocess.Popen(["xterm", "-geometry", "40x10+100+120", "+bc", "-xrm",
                              "*cursorBlink: false"], env=xvfb.environ(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def scenario() -> None:
        subprocess.run(["xdotool", "search", "--sync", "--class", "xterm"],
                       env=xvfb.environ(), check=True, timeout=20, capture_output=True)
        async with sharing(store, identity, novice, xvfb.display) as sharer:
            path = saved(invitation(store, identity, sharer.port), tmp_path)
            opening = asyncio.ensure_future(window.open_ticket(path))
            await type_password(qtbot, "pw")
            await until(lambda: window.viewer is not None
                        and window.view.canvas.framebuffer is not None, what="the first frame")
            viewer = window.viewer
            assert viewer is not None
            code = viewer.session.start.session_code
            assert "Alice" in window.peer_label.text() and code in window.code_label.text()
            assert window.control_label.text() == "Viewing only"

            # 1:1: every canvas pixel is the display's pixel at the same place.
            window.actual_action.trigger()
            await until(lambda: same_but_cursor(window, xvfb.display),
                        what="the canvas showing the display")
            # The remote pointer is drawn over the desktop (Xvfb starts it mid-screen).
            area = window.view.canvas.cursor_rect()
            assert area is not None
            assert not np.array_equal(canvas_pixels(window)[area.top() + 1:area.bottom(),
                                                            area.left() + 1:area.right()],
                                      screen(xvfb.display)[area.top() + 1:area.bottom(),
                                                           area.left() + 1:area.right()])
            assert window.view.canvas.width() == 1024 and window.view.canvas.height() == 768
            # A change on the display reaches the canvas.
            paint(xvfb, "#c08000")
            await until(lambda: tuple(canvas_pixels(window)[5, 5]) == (0x00, 0x80, 0xC0),
                        what="the new background showing")
            assert same_but_cursor(window, xvfb.display)
            window.show_stats()
            assert "fps" in window.stats_label.text() and "kbit/s" in window.stats_label.text()

            # Fitted into a smaller window, the whole screen is scaled, top-left still the same.
            window.fit_action.trigger()
            assert window.view.canvas.scale() < 1

            qtbot.keyClicks(window.chat.entry, "hello Alice")
            qtbot.keyClick(window.chat.entry, Qt.Key.Key_Return)
            await until(lambda: novice.chats, what="the chat reaching the novice")
            assert novice.chats[0].text == "hello Alice" and novice.chats[0].sender == "Bob"
            await sharer.send_chat("hi Bob")
            await until(lambda: "hi Bob" in window.chat.history.toPlainText(),
                        what="the novice's chat showing")

            await sharer.end_session()
            await opening
        assert window.view.canvas.framebuffer is None
        assert "Alice ended the session" in window.statusBar().currentMessage()
        assert window.peer_label.text() == "Not connected"
        assert not window.control_button.isEnabled()

    try:
        run_scenario(loop, scenario())
    finally:
        xterm.kill()
        xterm.wait()


def test_install_desktop_registers_the_file_type(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mimeapps.list").write_text(
        "[Default Applications]\ntext/html=firefox.desktop\n")
    assert main(["--install-desktop"]) == 0
    assert "now open with ra-view" in capsys.readouterr().out
    entry = (tmp_path / "data" / "applications" / "ra-view.desktop").read_text()
    assert "MimeType=application/x-remote-assist-invitation;" in entry
    assert "Exec=" in entry and "@EXEC@" not in entry and entry.rstrip().endswith("true")
    # update-mime-database built the cache that maps the extension to the type.
    globs = (tmp_path / "data" / "mime" / "globs2").read_text()
    assert "application/x-remote-assist-invitation:*.rainvite" in globs
    defaults = (tmp_path / "config" / "mimeapps.list").read_text()
    assert "application/x-remote-assist-invitation=ra-view.desktop" in defaults
    assert "text/html=firefox.desktop" in defaults


def test_without_a_display_the_window_says_so() -> None:
    environment = {k: v for k, v in os.environ.items()
                   if k not in {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"}}
    result = subprocess.run([sys.executable, "-m", "viewer.expert"], env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("ra-view: there is no display to open the window on; run it in "
                             "your desktop session, or use --headless\n")
