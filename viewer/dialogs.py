"""Dialogs that do not block, and the few widget helpers both windows use.

Dialogs that do not block: each is opened and its answer awaited on the shared asyncio loop.

`QDialog.exec()` would start a nested Qt loop inside a coroutine, under qasync's own; `open()`
plus a future keeps one loop and lets the session go on (chat, frames) while a question waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from PyQt6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

__all__ = ["ask", "ask_password", "ask_yes_no", "button", "hbox", "sentence", "tell"]


def button(text: str, name: str, clicked: Callable[[], object]) -> QPushButton:
    """A push button with an object name (tests and style sheets find it by that)."""
    widget = QPushButton(text)
    widget.setObjectName(name)
    widget.clicked.connect(lambda: clicked())
    return widget


def hbox(*widgets: QWidget, stretch: bool = False) -> QHBoxLayout:
    """Widgets side by side, pushed to the left when `stretch`."""
    layout = QHBoxLayout()
    for widget in widgets:
        layout.addWidget(widget)
    if stretch:
        layout.addStretch()
    return layout


async def ask(dialog: QDialog) -> int:
    """Open `dialog` (window-modal) and wait for its result code."""
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def finished(code: int) -> None:
        if not future.done():
            future.set_result(code)

    dialog.finished.connect(finished)
    dialog.open()
    try:
        return await future
    finally:
        dialog.finished.disconnect(finished)
        if dialog.isVisible():  # the wait was cancelled: the question is moot
            dialog.reject()
        dialog.deleteLater()


def sentence(text: str) -> str:
    """An engine message ("wrong password; ...") as a sentence: capital first, full stop last.

    Not for messages that start with a file name, whose case is the file's.
    """
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


async def tell(parent: QWidget | None, title: str, text: str,
               icon: QMessageBox.Icon = QMessageBox.Icon.Warning) -> None:
    """A sentence for the user, with OK."""
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("message")
    await ask(box)


async def ask_yes_no(parent: QWidget | None, title: str, text: str, yes: str, no: str) -> bool:
    """A question with two named answers; closing the box counts as `no`."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton,
                      parent)
    box.setObjectName("question")
    accept = box.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
    box.addButton(no, QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(accept)
    await ask(box)
    return box.clickedButton() is accept


async def ask_password(parent: QWidget | None, title: str, label: str) -> str | None:
    """The password typed, or None when the user cancelled."""
    dialog = QInputDialog(parent)
    dialog.setObjectName("password")
    dialog.setWindowTitle(title)
    dialog.setLabelText(label)
    dialog.setTextEchoMode(QLineEdit.EchoMode.Password)
    dialog.setInputMode(QInputDialog.InputMode.TextInput)
    if await ask(dialog) != QDialog.DialogCode.Accepted:
        return None
    return dialog.textValue()
