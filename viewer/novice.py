"""The novice's panel: invitations, the consent prompt, chat, and the way to stop the expert.

`NovicePanel` is the window; `PanelEvents` is the `SharerEvents` the sharer calls, and it asks or
tells the novice through the panel. Questions (let this expert in? let them take control?) are
dialogs awaited on the shared asyncio loop, so frames keep flowing while the novice reads.

While the expert drives, the novice must always see that they do and how to stop them: a red
banner in the panel, and a small bar that stays on top of every window with a Stop Control
button, because the panel itself may be hidden under the windows the expert opens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine import cli
from engine.capture import ScreenSource
from engine.identity import Identity
from engine.invitations import MAX_FAILED_ATTEMPTS, InvitationState, InvitationStore, StoreError
from engine.mail import MailError, SmtpSettings, invitation_message, send_message
from engine.netaddr import candidate_addresses
from engine.protocol import Chat, Permission, SessionStart
from engine.sharer import DEFAULT_PORT, ConsentRequest, Sharer, SharerEvents
from engine.tickets import EXTENSION, Ticket, describe_time, name_problem, permission_names
from viewer.chat import ChatPanel
from viewer.dialogs import ask, ask_yes_no, button, hbox, sentence, tell

__all__ = ["EXPIRY_CHOICES", "ControlBar", "NovicePanel", "PanelEvents", "run_panel"]

log = logging.getLogger(__name__)

EXPIRY_CHOICES = ("30m", "1h", "2h", "8h", "1d", "7d")
DRIVING_STYLE = "background:#c62828; color:white; font-weight:bold; padding:6px;"
STOP_STYLE = "background:#c62828; color:white; font-weight:bold; padding:4px 12px;"
HOW_TO_STOP = "press Esc, or Ctrl+C, or click Stop Control"


class ControlBar(QWidget):
    """A small bar on top of every window while the expert drives, with Stop Control."""

    stop = pyqtSignal()

    def __init__(self) -> None:
        super().__init__(None, Qt.WindowType.Tool | Qt.WindowType.WindowStaysOnTopHint
                         | Qt.WindowType.FramelessWindowHint)
        self.setObjectName("control-bar")
        self.label = QLabel()
        self.label.setStyleSheet(DRIVING_STYLE)
        self.button = QPushButton("Stop Control")
        self.button.clicked.connect(self.stop)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.label)
        layout.addWidget(self.button)
        self.setStyleSheet("ControlBar { background:#c62828; }")

    def show_driver(self, expert: str) -> None:
        self.label.setText(f"{expert} is controlling this computer: {HOW_TO_STOP}")
        self.adjustSize()
        screen = self.screen()
        if screen is not None:
            area = screen.availableGeometry()
            self.move(area.center().x() - self.width() // 2, area.top())
        self.show()
        self.raise_()


class PanelEvents(SharerEvents):
    """The sharer's questions and news, shown on the panel."""

    def __init__(self, panel: NovicePanel) -> None:
        self.panel = panel

    async def consent(self, request: ConsentRequest) -> bool:
        return await self.panel.ask_consent(request)

    async def control_requested(self, viewer_name: str) -> bool:
        return await self.panel.ask_control(viewer_name)

    def session_started(self, start: SessionStart) -> None:
        self.panel.session_started(start)

    def session_ended(self, reason: str) -> None:
        self.panel.session_ended(reason)

    def chat(self, message: Chat) -> None:
        self.panel.chat.show_message(message.sender, message.text, message.time)

    def control(self, controlled: bool, reason: str) -> None:
        self.panel.set_controlled(controlled, reason)

    def notice(self, text: str) -> None:
        self.panel.chat.show_notice(text)


class EmailDialog(QDialog):
    """Where to send an invitation, and through which mail server (defaults from ra-share.ini)."""

    def __init__(self, parent: QWidget | None, ticket: Ticket) -> None:
        super().__init__(parent)
        self.setObjectName("email")
        self.setWindowTitle("Send the invitation by e-mail")
        config = cli.load_config()
        smtp = config["smtp"] if config.has_section("smtp") else {}
        self.recipients = QLineEdit()
        self.recipients.setPlaceholderText("expert@example.org")
        self.server = QLineEdit(smtp.get("host", ""))
        if smtp.get("port"):
            self.server.setText(f"{self.server.text()}:{smtp['port']}")
        self.server.setPlaceholderText("smtp.example.org:587")
        self.starttls = QCheckBox("Encrypt with STARTTLS")
        self.starttls.setChecked(smtp.get("starttls", "no").lower() in {"yes", "true", "on", "1"})
        self.user = QLineEdit(smtp.get("user", ""))
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.from_address = QLineEdit(smtp.get("from", ""))
        self.from_address.setPlaceholderText("you@example.org")
        self.cafile = smtp.get("cafile")
        form = QFormLayout(self)
        form.addRow(QLabel(f"The e-mail carries the invitation from {ticket.name}, never its "
                           "password: tell the expert that by phone."))
        for label, field in (("To:", self.recipients), ("From:", self.from_address),
                             ("Mail server:", self.server), ("", self.starttls),
                             ("Login (optional):", self.user),
                             ("Mail password:", self.password)):
            form.addRow(label, field)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        send = buttons.addButton("Send", QDialogButtonBox.ButtonRole.AcceptRole)
        assert send is not None
        send.setObjectName("send")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def addresses(self) -> list[str]:
        return [a.strip() for a in self.recipients.text().replace(";", ",").split(",")
                if a.strip()]

    def settings(self) -> SmtpSettings:
        """The mail server as typed; CliError or MailError says what is wrong with it."""
        if not self.server.text().strip():
            raise cli.CliError(f"type the mail server that sends the invitation (HOST:PORT), "
                               f"or set host in the [smtp] section of {cli.config_path()}")
        host, port = cli.parse_host_port(self.server.text(), 25)
        return SmtpSettings(host=host, port=port, starttls=self.starttls.isChecked(),
                            username=self.user.text().strip() or None,
                            password=self.password.text() or None, cafile=self.cafile)


class NovicePanel(QMainWindow):
    """The novice's window. `attach(sharer)` before the first expert connects."""

    COLUMNS = ("Invitation", "State", "Expires", "Time left", "Wrong tries", "Allows")

    def __init__(self, *, store: InvitationStore, identity: Identity, name: str,
                 port: int) -> None:
        super().__init__()
        self.store = store
        self.identity = identity
        self.name = name
        self.port = port
        self.sharer: Sharer | None = None
        self.events = PanelEvents(self)
        self.expert: str | None = None
        self.controlled = False
        self._pending: set[asyncio.Task[None]] = set()
        self.setWindowTitle(f"Remote Assistance: {name}")
        self.control_bar = ControlBar()
        self.control_bar.stop.connect(self.stop_control)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._session_box())
        splitter.addWidget(self._invitation_box())
        self.setCentralWidget(splitter)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(1000)
        self.refresh()
        self.session_ended(None)
        self.resize(760, 640)

    # -- layout -----------------------------------------------------------------------------

    def _session_box(self) -> QWidget:
        box = QGroupBox("Session")
        self.state_label = QLabel()
        self.state_label.setObjectName("state")
        self.state_label.setWordWrap(True)
        self.driving_label = QLabel()
        self.driving_label.setObjectName("driving")
        self.driving_label.setStyleSheet(DRIVING_STYLE)
        self.driving_label.setWordWrap(True)
        self.stop_button = button("Stop Control", "stop-control", self.stop_control)
        self.stop_button.setToolTip(f"Take the mouse and keyboard back ({HOW_TO_STOP})")
        self.end_button = button("End Session", "end-session", self._end_clicked)
        buttons = hbox(self.stop_button, self.end_button, stretch=True)
        self.chat = ChatPanel()
        self.chat.send.connect(self._send_chat)
        layout = QVBoxLayout(box)
        layout.addWidget(self.state_label)
        layout.addWidget(self.driving_label)
        layout.addLayout(buttons)
        layout.addWidget(self.chat)
        return box

    def _invitation_box(self) -> QWidget:
        box = QGroupBox("Invitations")
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_again = QLineEdit()
        self.password_again.setObjectName("password-again")
        self.password_again.setEchoMode(QLineEdit.EchoMode.Password)
        self.no_password = QCheckBox("No password (anyone who gets the file may ask to connect)")
        self.no_password.toggled.connect(self._password_toggled)
        self.expiry = QComboBox()
        self.expiry.addItems(EXPIRY_CHOICES)
        self.expiry.setCurrentText("1h")
        self.expiry.setEditable(True)
        self.allow_control = QCheckBox("The expert may ask to take control")
        self.allow_control.setChecked(True)
        self.create_button = button("Create Invitation", "create", self.create_invitation)
        form = QFormLayout()
        for label, field in (("Password:", self.password),
                             ("Password again:", self.password_again), ("", self.no_password),
                             ("Expires after:", self.expiry), ("", self.allow_control),
                             ("", self.create_button)):
            form.addRow(label, field)

        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        header = self.table.horizontalHeader()
        assert header is not None
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.save_button = button("Save as File…", "save", self._save_clicked)
        self.email_button = button("Send by E-mail…", "email", self._email_clicked)
        self.expire_button = button("Expire", "expire", self.expire_selected)
        self.expire_all_button = button("Expire All", "expire-all", self.expire_all)
        actions = hbox(self.save_button, self.email_button, self.expire_button,
                      self.expire_all_button, stretch=True)
        self.message = QLabel()
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        layout = QVBoxLayout(box)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.table)
        layout.addLayout(actions)
        return box

    def attach(self, sharer: Sharer) -> None:
        self.sharer = sharer

    # -- invitations ------------------------------------------------------------------------

    def _password_toggled(self, off: bool) -> None:
        self.password.setEnabled(not off)
        self.password_again.setEnabled(not off)

    def _chosen_password(self) -> str | None:
        if self.no_password.isChecked():
            return None
        password = self.password.text()
        if not password:
            raise cli.CliError("type a password for the invitation, or tick No password")
        if password != self.password_again.text():
            raise cli.CliError("the two passwords differ; type them again")
        return password

    def create_invitation(self) -> Ticket | None:
        """Make an invitation from the form; the problem, if any, is shown beside it."""
        try:
            problem = name_problem(self.name)
            if problem:
                raise cli.CliError(f"{problem}; start ra-share with another --name")
            lifetime = cli.parse_duration(self.expiry.currentText())
            password = self._chosen_password()
            permissions = Permission.VIEW
            if self.allow_control.isChecked():
                permissions |= Permission.CONTROL
            ticket = self.store.create(
                name=self.name, addresses=candidate_addresses(self.port),
                fingerprint=self.identity.fingerprint, lifetime=lifetime,
                password=password, permissions=permissions)
        except (cli.CliError, StoreError) as exc:
            self.show_message(str(exc), error=True)
            return None
        self.password.clear()
        self.password_again.clear()
        self.refresh()
        self.select(ticket.id)
        self.show_message(
            f"Invitation {ticket.id_hex[:8]} made; it expires at {describe_time(ticket.expires)} "
            "and allows " + " and ".join(permission_names(ticket.permissions)) +
            ". Save it as a file or send it by e-mail" +
            (", and tell the expert the password by phone." if password else "."))
        return ticket

    def show_message(self, text: str, *, error: bool = False) -> None:
        text = sentence(text) if error else text
        self.message.setStyleSheet("color:#c62828;" if error else "")
        self.message.setText(text)

    def refresh(self) -> None:
        """The table from the store, with the time left as of now (runs every second)."""
        selected = self.selected()
        try:
            invitations = self.store.invitations()
            now = self.store.clock()
        except StoreError as exc:
            self.show_message(str(exc), error=True)
            return
        self.table.setRowCount(len(invitations))
        for row, invitation in enumerate(invitations):
            cells = (
                invitation.id_hex[:8],
                invitation.state.value,
                f"{invitation.expires.astimezone():%Y-%m-%d %H:%M}",
                cli.describe_duration(invitation.time_left(now)),
                f"{invitation.failed_attempts}/{MAX_FAILED_ATTEMPTS}",
                ", ".join(permission_names(invitation.permissions)),
            )
            for column, text in enumerate(cells):
                item = self.table.item(row, column)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, column, item)
                item.setText(text)
                item.setData(Qt.ItemDataRole.UserRole, invitation.id)
        if selected is not None:
            self.select(selected)
        self.expire_all_button.setEnabled(
            any(i.state is InvitationState.OPEN for i in invitations))
        self._selection_changed()

    def select(self, ticket_id: bytes) -> None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == ticket_id:
                self.table.selectRow(row)
                return

    def selected(self) -> bytes | None:
        rows = self.table.selectionModel().selectedRows()  # type: ignore[union-attr]
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else bytes(item.data(Qt.ItemDataRole.UserRole))

    def _selection_changed(self) -> None:
        ticket_id = self.selected()
        state = self.table.item(self.table.currentRow(), 1) if ticket_id is not None else None
        is_open = state is not None and state.text() == InvitationState.OPEN.value
        for action in (self.save_button, self.email_button, self.expire_button):
            action.setEnabled(is_open)

    def expire_selected(self) -> None:
        ticket_id = self.selected()
        if ticket_id is None:
            return
        try:
            ended = self.store.expire(ticket_id)
        except StoreError as exc:
            self.show_message(str(exc), error=True)
            return
        self.refresh()
        self.show_message(f"Invitation {ticket_id.hex()[:8]} ended: nobody can use it any more."
                          if ended else f"Invitation {ticket_id.hex()[:8]} was already over.")

    def expire_all(self) -> None:
        try:
            count = self.store.expire_all()
        except StoreError as exc:
            self.show_message(str(exc), error=True)
            return
        self.refresh()
        self.show_message(f"Ended {count} open invitation{'s' if count != 1 else ''}.")

    def ticket(self, ticket_id: bytes) -> Ticket | None:
        """The file of an open invitation, made afresh with this computer's addresses as of
        now: whichever window or command made it. The problem, if any, is shown."""
        try:
            return self.store.ticket(ticket_id, addresses=candidate_addresses(self.port),
                                     fingerprint=self.identity.fingerprint)
        except StoreError as exc:
            self.show_message(str(exc), error=True)
            return None

    def save_invitation(self, ticket_id: bytes, path: Path) -> bool:
        ticket = self.ticket(ticket_id)
        if ticket is None:
            return False
        if path.suffix != EXTENSION:
            path = path.with_name(path.name + EXTENSION)
        try:
            ticket.save(path)
        except OSError as exc:
            self.show_message(f"cannot write {path}: {exc.strerror or exc}; choose another "
                              "folder", error=True)
            return False
        self.show_message(f"Invitation saved to {path}. Give the expert the file"
                          + (" and, separately, the password." if ticket.password else "."))
        return True

    async def choose_file_and_save(self) -> None:
        ticket_id = self.selected()
        if ticket_id is None or self.ticket(ticket_id) is None:
            return  # not asked where to save a file that cannot be made
        dialog = QFileDialog(self, "Save the invitation",
                             str(Path.home() / f"invitation-{ticket_id.hex()[:8]}{EXTENSION}"),
                             f"Invitations (*{EXTENSION})")
        dialog.setObjectName("save")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix(EXTENSION.lstrip("."))
        if await ask(dialog) == QDialog.DialogCode.Accepted and dialog.selectedFiles():
            self.save_invitation(ticket_id, Path(dialog.selectedFiles()[0]))

    async def email_invitation(self) -> None:
        ticket_id = self.selected()
        ticket = None if ticket_id is None else self.ticket(ticket_id)
        if ticket is None:
            return
        dialog = EmailDialog(self, ticket)
        while await ask(dialog) == QDialog.DialogCode.Accepted:
            try:
                recipients = dialog.addresses()
                if not recipients:
                    raise cli.CliError("type the expert's e-mail address")
                settings = dialog.settings()
                sender = dialog.from_address.text().strip() or recipients[0]
                message = invitation_message(
                    ticket, sender=sender, recipients=recipients,
                    filename=f"invitation-{ticket.id_hex[:8]}{EXTENSION}")
                self.show_message(f"Sending to {', '.join(recipients)}…")
                await asyncio.to_thread(send_message, message, settings)
            except (cli.CliError, MailError) as exc:
                self.show_message(str(exc), error=True)
                await tell(self, "The e-mail was not sent", sentence(str(exc)))
                dialog = EmailDialog(self, ticket)
                continue
            self.show_message(f"Invitation sent to {', '.join(recipients)} through {settings}.")
            return

    def _save_clicked(self) -> None:
        self._spawn(self.choose_file_and_save())

    def _email_clicked(self) -> None:
        self._spawn(self.email_invitation())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("panel action failed", exc_info=task.exception())

    # -- the session ------------------------------------------------------------------------

    async def ask_consent(self, request: ConsentRequest) -> bool:
        self.show()
        self.raise_()
        self.activateWindow()
        control = ("and may ask to take control of your mouse and keyboard"
                   if Permission.CONTROL in request.permissions else "(view only)")
        return await ask_yes_no(
            self, "An expert wants to connect",
            f"{request.viewer_name} ({request.peer}) wants to see your screen {control}.\n\n"
            f"Session code: {request.session_code}\n\n"
            "Accept only if the expert's window shows the same code.",
            "Accept", "Decline")

    async def ask_control(self, viewer_name: str) -> bool:
        self.show()
        self.raise_()
        return await ask_yes_no(
            self, "Take control?",
            f"{viewer_name} asks to take control of your mouse and keyboard.\n\n"
            f"You can take control back at any moment: {HOW_TO_STOP}.",
            f"Let {viewer_name} Take Control", "Keep Control")

    def session_started(self, start: SessionStart) -> None:
        self.expert = start.viewer_name
        self.state_label.setText(f"<b>{start.viewer_name}</b> is watching your screen. "
                                 f"Session code {start.session_code}.")
        self.end_button.setEnabled(True)
        self.chat.set_enabled(True)
        self.chat.show_notice(f"{start.viewer_name} joined (session code {start.session_code}).")
        self.set_controlled(False, "")

    def session_ended(self, reason: str | None) -> None:
        self.set_controlled(False, "")
        if reason is not None:
            self.chat.show_notice(f"Session over: {reason}.")
        self.expert = None
        self.state_label.setText(
            "Nobody is connected. Make an invitation below and give it to the expert."
            if reason is None else
            f"Nobody is connected ({reason}). Your invitations stay open until they expire.")
        self.end_button.setEnabled(False)
        self.chat.set_enabled(False)

    def set_controlled(self, controlled: bool, reason: str) -> None:
        """Show (or clear) that the expert is driving."""
        was = self.controlled
        self.controlled = controlled
        self.stop_button.setEnabled(controlled)
        self.stop_button.setStyleSheet(STOP_STYLE if controlled else "")
        self.driving_label.setVisible(controlled)
        if controlled:
            expert = self.expert or "The expert"
            self.driving_label.setText(
                f"{expert} is controlling your computer. To stop: {HOW_TO_STOP}.")
            self.control_bar.show_driver(expert)
        else:
            self.control_bar.hide()
        if reason and controlled != was:
            self.chat.show_notice(sentence(reason))

    def stop_control(self) -> None:
        """Stop Control: takes effect at once, before any later input from the expert."""
        if self.sharer is not None:
            self.sharer.stop_control()
        self.set_controlled(False, "")

    def _end_clicked(self) -> None:
        if self.sharer is not None:
            self.set_controlled(False, "")
            self._spawn(self.sharer.end_session())

    def _send_chat(self, text: str) -> None:
        self._spawn(self._chat(text))

    async def _chat(self, text: str) -> None:
        if self.sharer is None:
            return
        line = await self.sharer.send_chat(text)
        if line is not None:
            self.chat.show_message(line.sender, line.text, line.time)

    def closeEvent(self, event: QCloseEvent | None) -> None:
        self.control_bar.close()
        self._timer.stop()
        super().closeEvent(event)



def run_panel(*, name: str, port: int = DEFAULT_PORT, host: str | None = None,
              display: str | None = None) -> int:
    """`ra-share` with a display: the panel, and the sharer serving `display` until it closes."""
    import qasync

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Remote Assistance")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    # The expert's input goes to the display that is shared.
    display = display or os.environ.get("DISPLAY")
    identity = Identity.load_or_create()
    with InvitationStore() as store:
        panel = NovicePanel(store=store, identity=identity, name=name, port=port)
        sharer = Sharer(identity=identity, store=store, name=name, events=panel.events,
                        source=lambda: ScreenSource(display), display=display)
        panel.attach(sharer)
        panel.show()
        closed = asyncio.Event()
        app.lastWindowClosed.connect(closed.set)

        async def serve() -> int:
            try:
                await sharer.start(host, port)
            except OSError as exc:
                await tell(panel, "Cannot share", f"Port {port} cannot be used "
                           f"({exc.strerror or exc}); close the other ra-share, or start this "
                           "one with another --port.")
                return 1
            try:
                await closed.wait()
            finally:
                await sharer.close()
            return 0

        with loop:
            return loop.run_until_complete(serve())
