"""The chat panel both windows show: the conversation, a line to type in, and Send."""

from __future__ import annotations

import html
import time

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QTextBrowser, QVBoxLayout, QWidget

__all__ = ["ChatPanel"]

# The protocol's limit on one chat line is generous; a person types far less.
MAX_LINE = 4000


class ChatPanel(QWidget):
    """`send` fires with the text the user typed; `show_message` and `show_notice` add lines."""

    send = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = QTextBrowser()
        self.history.setOpenLinks(False)
        self.entry = QLineEdit()
        self.entry.setMaxLength(MAX_LINE)
        self.entry.setPlaceholderText("Type a message and press Enter")
        self.send_button = QPushButton("Send")
        self.entry.returnPressed.connect(self._submit)
        self.send_button.clicked.connect(self._submit)
        row = QHBoxLayout()
        row.addWidget(self.entry)
        row.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.history)
        layout.addLayout(row)
        self.set_enabled(False)

    def set_enabled(self, enabled: bool) -> None:
        """Typing makes sense only while a session runs."""
        self.entry.setEnabled(enabled)
        self.send_button.setEnabled(enabled)

    def show_message(self, sender: str, text: str, when: float | None = None) -> None:
        stamp = time.strftime("%H:%M", time.localtime(time.time() if when is None else when))
        self.history.append(f'<span style="color:gray">{stamp}</span> '
                            f"<b>{html.escape(sender)}:</b> {html.escape(text)}")

    def show_notice(self, text: str) -> None:
        self.history.append(f"<i>{html.escape(text)}</i>")

    def _submit(self) -> None:
        text = self.entry.text().strip()
        if text and self.entry.isEnabled():
            self.entry.clear()
            self.send.emit(text)
