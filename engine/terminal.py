"""The novice's side in a terminal: `ra-share serve` asks and tells through standard input/output.

Each line the novice types is chat to the expert, except the answers to questions (y / n) and
the commands ``/stop`` (stop control), ``/end`` (end the session) and ``/quit`` (stop
sharing). Standard input is read by a thread, because asyncio cannot read a terminal without
blocking on every platform; lines hop to the event loop through a queue.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from engine.protocol import Chat, Permission, SessionStart
from engine.sharer import ConsentRequest, SharerEvents
from engine.tickets import permission_names

__all__ = ["TerminalNovice"]

END_OF_INPUT = None


class TerminalNovice(SharerEvents):
    """Questions on stdout, answers and chat from stdin; `auto_accept` answers yes to all."""

    def __init__(self, *, auto_accept: bool = False, out: TextIO | None = None,
                 stdin: TextIO | None = None) -> None:
        self.auto_accept = auto_accept
        self.out = out or sys.stdout
        self._stdin = stdin or sys.stdin
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._question: asyncio.Future[str | None] | None = None
        self.on_chat: Callable[[str], object] | None = None
        self.on_stop: Callable[[], object] | None = None
        self.on_end: Callable[[], object] | None = None
        self.on_quit: Callable[[], object] | None = None

    def start(self) -> None:
        """Read standard input from now on (a daemon thread: it must not keep us alive)."""
        loop = asyncio.get_running_loop()

        def read() -> None:
            for line in self._stdin:
                loop.call_soon_threadsafe(self._line, line.rstrip("\n"))
            loop.call_soon_threadsafe(self._line, END_OF_INPUT)

        threading.Thread(target=read, name="stdin", daemon=True).start()

    def _line(self, line: str | None) -> None:
        if self._question is not None and not self._question.done():
            self._question.set_result(line)
            return
        if line is None:
            return
        text = line.strip()
        if text == "/stop" and self.on_stop is not None:
            self.on_stop()
        elif text == "/end" and self.on_end is not None:
            self.on_end()
        elif text == "/quit" and self.on_quit is not None:
            self.on_quit()
        elif text and self.on_chat is not None:
            self.on_chat(text)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def ask(self, question: str) -> bool:
        """A yes/no question; anything but y or yes (or the end of input) is no."""
        self.say(f"{question} [y/N]")
        self._question = asyncio.get_running_loop().create_future()
        try:
            answer = await self._question
        finally:
            self._question = None
        return (answer or "").strip().lower() in {"y", "yes"}

    async def consent(self, request: ConsentRequest) -> bool:
        allows = " and ".join(permission_names(request.permissions))
        self.say(f"{request.viewer_name} ({request.peer}) wants to see your screen.\n"
                 f"Session code: {request.session_code} (the expert sees the same code).\n"
                 f"This invitation allows {allows}.")
        if self.auto_accept:
            self.say("Accepted automatically (--auto-accept).")
            return True
        return await self.ask("Let them see your screen?")

    def session_started(self, start: SessionStart) -> None:
        self.say(f"{start.viewer_name} can see your screen now. Type to chat; /end ends the "
                 "session, /quit stops sharing.")
        if start.permissions & Permission.CONTROL:
            self.say("If you let the expert take control, Esc, Ctrl+C or /stop takes it back.")

    async def control_requested(self, viewer_name: str) -> bool:
        self.say(f"{viewer_name} asks to take control of your mouse and keyboard. You can stop "
                 "it at any moment: press Esc or Ctrl+C on your desktop, or type /stop here.")
        if self.auto_accept:
            self.say("Accepted automatically (--auto-accept).")
            return True
        return await self.ask(f"Let {viewer_name} take control?")

    def control(self, controlled: bool, reason: str) -> None:
        self.say(("Control: " if controlled else "Control ended: ") + reason + ".")

    def session_ended(self, reason: str) -> None:
        self.say(f"Session over: {reason}.")

    def chat(self, message: Chat) -> None:
        self.say(f"[{datetime.fromtimestamp(message.time):%H:%M}] {message.sender}: "
                 f"{message.text}")

    def notice(self, text: str) -> None:
        self.say(text)
