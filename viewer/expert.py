"""`ra-view`: the expert's window onto the novice's desktop.

    ra-view [TICKET.rainvite] [--password-file PATH] [--name NAME]
    ra-view TICKET --headless [--snapshot OUT.png] [--seconds N]   (no window: engine.headless)
    ra-view --install-desktop                                       (open .rainvite files with it)

Open an invitation (argument, File ▸ Open, or a double-click once `ra-view --install-desktop`
has registered the file type), type its password, wait for the novice to accept; then the
desktop shows on the canvas, the chat runs beside it, and Take Control asks the novice for the
mouse and keyboard. Every refusal is a dialog whose sentence says what to do next.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PyQt6.QtWidgets import (
    QApplication,
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from engine import headless
from engine.channel import SessionError
from engine.cli import CliError, default_name, read_secret_file
from engine.client import Client, Viewer, ViewerEvents
from engine.frame_format import Rect
from engine.protocol import Buttons, Chat, ConsentPending, Cursor, Permission, Reason
from engine.tickets import EXTENSION, Ticket, TicketError
from viewer.canvas import CanvasView
from viewer.chat import ChatPanel
from viewer.desktop import install_desktop_main
from viewer.dialogs import ask, ask_password, button, hbox, sentence, tell

__all__ = ["ExpertWindow", "main"]

log = logging.getLogger(__name__)

# Titles of the refusal dialogs. The engine's sentence under each says why and mostly what to
# do; where it cannot know (the novice said no, or did not answer), the advice is added here.
REFUSAL_TITLES = {
    Reason.WRONG_PASSWORD: "Wrong password",
    Reason.EXPIRED: "The invitation has expired",
    Reason.REVOKED: "The invitation was ended",
    Reason.LOCKED: "The invitation is locked",
    Reason.DECLINED: "The novice declined",
    Reason.BUSY: "The novice is busy",
    Reason.TIMEOUT: "No answer",
    Reason.UNKNOWN_INVITATION: "Unknown invitation",
    Reason.PROTOCOL_ERROR: "Cannot connect safely",
    Reason.UNSUPPORTED_VERSION: "Different versions",
}
REFUSAL_ADVICE = {
    Reason.DECLINED: "talk to {name}, and if they want your help, open the invitation again",
    Reason.TIMEOUT: "make sure {name} is at the computer, then open the invitation again",
}


def refusal_text(error: SessionError, name: str) -> str:
    """The refusal as sentences for the expert, ending with what to do next."""
    text = error.reason.rstrip(".")
    advice = REFUSAL_ADVICE.get(error.code)
    if advice is not None:
        text += "; " + advice.format(name=name)
    return sentence(text)


DRIVING_STYLE = "background:#c62828; color:white; font-weight:bold; padding:4px;"
WATCHING_STYLE = "background:#1565c0; color:white; padding:4px;"


class _Events(ViewerEvents):
    """The engine's news, straight to the window (same thread: the asyncio loop is Qt's)."""

    def __init__(self, window: ExpertWindow) -> None:
        self.window = window

    def resized(self, width: int, height: int) -> None:
        self.window.framebuffer_replaced()

    def frame(self, rects: list[Rect]) -> None:
        self.window.view.canvas.changed(rects)

    def cursor(self, cursor: Cursor) -> None:
        self.window.view.canvas.set_cursor(cursor)

    def chat(self, message: Chat) -> None:
        self.window.chat.show_message(message.sender, message.text, message.time)

    def control(self, granted: bool, reason: str) -> None:
        self.window.control_changed(granted, reason)

    def paused(self, reason: str, seconds: float) -> None:
        self.window.show_status(f"{sentence(reason)} Your input waits about "
                                f"{max(seconds, 1):.0f} s.")

    def ended(self, error: SessionError) -> None:
        self.window.session_ended(error)


class ExpertWindow(QMainWindow):
    """Open invitations, watch, chat, and drive while the novice allows it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.viewer: Viewer | None = None
        self.ticket: Ticket | None = None
        self.requested = False
        # From --password-file: tried first, once, instead of asking.
        self.password: str | None = None
        self._connection: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Input to the novice, in order, one message at a time.
        self._input: asyncio.Queue[Callable[[Viewer], Coroutine[Any, Any, None]]] = (
            asyncio.Queue())
        self._sender: asyncio.Task[None] | None = None
        self.setWindowTitle("Remote Assistance")
        self.resize(1100, 760)

        self.view = CanvasView()
        canvas = self.view.canvas
        canvas.pointer_input.connect(self._pointer)
        canvas.key_input.connect(self._key)
        canvas.scroll_input.connect(self._scroll)
        self.peer_label = QLabel()
        self.peer_label.setObjectName("peer")
        self.code_label = QLabel()
        self.code_label.setObjectName("code")
        self.control_label = QLabel()
        self.control_label.setObjectName("control-state")
        self.control_button = button("Take Control", "control", self._control_clicked)
        header = hbox(self.peer_label, self.code_label)
        header.addStretch()
        header.addWidget(self.control_label)
        header.addWidget(self.control_button)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addLayout(header)
        layout.addWidget(self.view, 1)
        self.setCentralWidget(central)

        self.chat = ChatPanel()
        self.chat.send.connect(self._send_chat)
        dock = QDockWidget("Chat", self)
        dock.setObjectName("chat")
        dock.setWidget(self.chat)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.resizeDocks([dock], [280], Qt.Orientation.Horizontal)

        self._build_actions()
        self.stats_label = QLabel()
        self.stats_label.setObjectName("stats")
        status = self.statusBar()
        assert status is not None
        status.addPermanentWidget(self.stats_label)
        self._stats_timer = QTimer(self)
        self._stats_timer.timeout.connect(self.show_stats)
        self._stats_timer.start(1000)
        self.show_idle("Open an invitation file to start (File ▸ Open).")

    def _build_actions(self) -> None:
        menu = self.menuBar()
        assert menu is not None
        file_menu = menu.addMenu("&File")
        view_menu = menu.addMenu("&View")
        assert file_menu is not None and view_menu is not None
        self.open_action = QAction("&Open Invitation…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_action.triggered.connect(lambda: self.spawn(self.choose_and_open()))
        self.end_action = QAction("&End Session", self)
        self.end_action.triggered.connect(lambda: self.spawn(self.end_session()))
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addActions([self.open_action, self.end_action])
        file_menu.addSeparator()
        file_menu.addAction(quit_action)

        session_menu = menu.addMenu("&Session")
        assert session_menu is not None
        # Reachable from the keyboard only while not driving: then every key is the novice's.
        self.control_action = QAction("&Take Control", self)
        self.control_action.setShortcut(QKeySequence("Ctrl+Shift+T"))
        self.control_action.triggered.connect(self._control_clicked)
        session_menu.addAction(self.control_action)

        group = QActionGroup(self)
        self.fit_action = QAction("&Fit to Window", self)
        self.actual_action = QAction("&Actual Size (1:1)", self)
        for action in (self.fit_action, self.actual_action):
            action.setCheckable(True)
            group.addAction(action)
            view_menu.addAction(action)
        self.fit_action.setChecked(True)
        self.fit_action.toggled.connect(self.view.canvas.set_fit)

        toolbar = QToolBar("Session", self)
        toolbar.setObjectName("toolbar")
        toolbar.setMovable(False)
        toolbar.addActions([self.open_action, self.end_action])
        toolbar.addSeparator()
        toolbar.addActions([self.fit_action, self.actual_action])
        self.addToolBar(toolbar)

    # -- tasks ---------------------------------------------------------------------------

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ra-view: unexpected failure", exc_info=task.exception())

    # -- connecting ------------------------------------------------------------------------

    async def choose_and_open(self) -> None:
        dialog = QFileDialog(self, "Open an invitation", str(Path.home()),
                             f"Invitations (*{EXTENSION});;All files (*)")
        dialog.setObjectName("open")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        if await ask(dialog) == QDialog.DialogCode.Accepted and dialog.selectedFiles():
            await self.open_ticket(Path(dialog.selectedFiles()[0]))

    async def open_ticket(self, path: Path) -> None:
        """Load the invitation, ask for its password, connect, and run the session."""
        try:
            ticket = Ticket.load(path)
        except TicketError as exc:
            await tell(self, "Cannot open the invitation", str(exc))
            return
        await self.end_session()
        self.ticket = ticket
        self._connection = asyncio.current_task()
        try:
            viewer = await self._connect(ticket)
            if viewer is not None:
                await self._run(viewer)
        finally:
            self._connection = None

    async def _connect(self, ticket: Ticket) -> Viewer | None:
        """A session, or None once the expert gave up; refusals are shown as they come."""
        label = f"The password {ticket.name} gave you for this invitation:"
        while True:
            password, self.password = self.password, None
            if ticket.password and password is None:
                password = await ask_password(self, f"Invitation from {ticket.name}", label)
                if password is None:
                    self.show_idle("Not connected: no password was typed.")
                    return None
            self.show_idle(f"Connecting to {ticket.name}…")
            client = Client(ticket, password=password, name=self.name,
                            on_consent_pending=self._consent_pending)
            try:
                session = await client.connect()
            except SessionError as exc:
                if exc.code is Reason.WRONG_PASSWORD and ticket.password:
                    # Ask again, with the sentence that says how many tries are left.
                    label = sentence(exc.reason)
                    continue
                self.show_idle(f"Not connected: {exc.reason}.")
                await tell(self, REFUSAL_TITLES.get(exc.code, "Cannot connect"),
                           refusal_text(exc, ticket.name))
                return None
            return Viewer(session, _Events(self))

    def _consent_pending(self, message: ConsentPending) -> None:
        assert self.ticket is not None
        name = self.ticket.name
        self.peer_label.setText(f"Waiting for <b>{name}</b> to accept…")
        self.code_label.setText(f"Session code <b>{message.session_code}</b>")
        self.show_status(f"{name} is being asked to let you in. Check together that "
                         f"{name}'s screen shows the session code {message.session_code}.")

    async def _run(self, viewer: Viewer) -> None:
        start = viewer.session.start
        self.viewer = viewer
        self.setWindowTitle(f"{start.sharer_name}'s desktop: Remote Assistance")
        self.peer_label.setText(f"<b>{start.sharer_name}</b>'s desktop")
        self.code_label.setText(f"Session code <b>{start.session_code}</b>")
        self.chat.set_enabled(True)
        self.chat.show_notice(f"Connected to {start.sharer_name} "
                              f"(session code {start.session_code}).")
        self.end_action.setEnabled(True)
        self.show_status(f"Connected to {start.sharer_name}.")
        self.control_changed(False, "")
        self._sender = asyncio.ensure_future(self._send_input(viewer))
        try:
            await viewer.run()
        finally:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
            self._sender = None
            self.viewer = None

    async def end_session(self) -> None:
        """Leave politely (or stop connecting); the window stays, ready for another invitation."""
        viewer, connection = self.viewer, self._connection
        if viewer is not None:
            await viewer.close()
        elif connection is not None and connection is not asyncio.current_task():
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)
            self.show_idle("Not connected: you stopped connecting.")

    # -- the session -----------------------------------------------------------------------

    def framebuffer_replaced(self) -> None:
        viewer = self.viewer
        self.view.canvas.set_framebuffer(None if viewer is None else viewer.framebuffer)

    def session_ended(self, error: SessionError) -> None:
        """Everything back to idle, and why it ended in plain words."""
        self.view.canvas.clear()
        reason = error.reason.rstrip(".")
        self.chat.show_notice(f"Session over: {reason}.")
        self.show_idle(f"Session over: {reason}. Open an invitation to connect again.")

    def show_idle(self, status: str) -> None:
        self.requested = False
        self.view.canvas.set_controlling(False)
        self.peer_label.setText("Not connected")
        self.code_label.setText("")
        self.control_label.setText("")
        self.control_label.setStyleSheet("")
        self.control_button.setText("Take Control")
        self.control_button.setEnabled(False)
        self.control_action.setEnabled(False)
        self.end_action.setEnabled(self._connection is not None)
        self.chat.set_enabled(False)
        self.stats_label.setText("")
        self.setWindowTitle("Remote Assistance")
        self.show_status(status)

    def show_status(self, text: str) -> None:
        status = self.statusBar()
        assert status is not None
        status.showMessage(text)

    def control_changed(self, granted: bool, reason: str) -> None:
        """Show who drives; input flows only while the novice has granted control."""
        viewer = self.viewer
        if viewer is None:
            return
        start = viewer.session.start
        self.requested = False
        self.view.canvas.set_controlling(granted)
        allowed = Permission.CONTROL in start.permissions
        self.control_button.setEnabled(allowed)
        self.control_action.setEnabled(allowed)
        self.control_button.setToolTip("" if allowed else "This invitation is view-only.")
        self.control_action.setText("&Release Control" if granted else "&Take Control")
        if granted:
            self.control_button.setText("Release Control")
            self.control_label.setText(f"You are controlling {start.sharer_name}'s computer")
            self.control_label.setStyleSheet(DRIVING_STYLE)
        else:
            self.control_button.setText("Take Control")
            self.control_label.setText("Viewing only")
            self.control_label.setStyleSheet(WATCHING_STYLE)
        if reason:
            self.chat.show_notice(sentence(reason))
            self.show_status(sentence(reason))

    def _control_clicked(self) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        if viewer.controlling:
            self.spawn(viewer.release_control())
            self.control_changed(False, "You gave control back")
        elif not self.requested:
            self.requested = True
            self.control_button.setText("Waiting for an answer…")
            self.control_button.setEnabled(False)
            self.control_action.setEnabled(False)
            self.show_status(f"Asking {viewer.session.start.sharer_name} for control…")
            self.spawn(viewer.request_control())

    def _send_chat(self, text: str) -> None:
        viewer = self.viewer
        if viewer is not None:
            self.spawn(self._chat(viewer, text))

    async def _chat(self, viewer: Viewer, text: str) -> None:
        line = await viewer.send_chat(text)
        self.chat.show_message(line.sender, line.text, line.time)

    def _pointer(self, x: int, y: int, buttons: int) -> None:
        self._input.put_nowait(lambda v: v.pointer(x, y, Buttons(buttons)))

    def _key(self, keysym: int, down: bool) -> None:
        self._input.put_nowait(lambda v: v.key(keysym, down))

    def _scroll(self, dx: int, dy: int) -> None:
        self._input.put_nowait(lambda v: v.scroll(dx, dy))

    async def _send_input(self, viewer: Viewer) -> None:
        """One task sends all input, so the novice's computer sees it in the order typed."""
        while True:
            send = await self._input.get()
            if self.view.canvas.controlling:
                await send(viewer)

    def show_stats(self) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        stats = viewer.stats
        latency = "–" if stats.latency_ms is None else f"{stats.latency_ms:.0f} ms"
        self.stats_label.setText(f"{stats.fps:.0f} fps   {stats.kbit_s:.0f} kbit/s   "
                                 f"latency {latency}")

    def closeEvent(self, event: QCloseEvent | None) -> None:
        if self.viewer is not None or self._connection is not None:
            # A polite Bye; `run_window` lets the task finish before the loop stops.
            with contextlib.suppress(RuntimeError):  # no loop running: nothing to say goodbye on
                asyncio.get_running_loop()
                self.spawn(self.end_session())
        self._stats_timer.stop()
        super().closeEvent(event)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ra-view", description="Help someone who invited "
                                     "you: open their invitation and see their screen.")
    parser.add_argument("ticket", nargs="?", metavar=f"TICKET{EXTENSION}",
                        help="the invitation file (or File ▸ Open in the window)")
    parser.add_argument("--headless", action="store_true",
                        help="no window: connect, report, and optionally save a snapshot")
    parser.add_argument("--install-desktop", action="store_true",
                        help="make the desktop open invitation files with ra-view, then exit")
    headless.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.install_desktop:
        return install_desktop_main()
    if args.headless:
        if not args.ticket:
            parser.error("--headless needs the invitation file")
        return headless.main(args)
    return run_window(args)


def run_window(args: argparse.Namespace) -> int:
    import qasync

    if sys.platform.startswith("linux") and not any(
            os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        # Qt would abort with a core dump; say it as a sentence instead.
        print("ra-view: there is no display to open the window on; run it in your desktop "
              "session, or use --headless", file=sys.stderr)
        return 1

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Remote Assistance")
    app.setDesktopFileName("ra-view")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = ExpertWindow(args.name or default_name())
    if args.password_file:
        try:
            window.password = read_secret_file(args.password_file, "password")
        except CliError as exc:
            print(f"ra-view: {exc}", file=sys.stderr)
            return 1
    window.show()
    closed = asyncio.Event()
    app.lastWindowClosed.connect(closed.set)

    async def run() -> None:
        if args.ticket:
            window.spawn(window.open_ticket(Path(args.ticket)))
        await closed.wait()
        # A polite Bye to the novice before the process goes.
        await asyncio.gather(*window._tasks, return_exceptions=True)

    with loop:
        loop.run_until_complete(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
