"""The novice's terminal: questions on stdout, answers, chat and commands from stdin."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Awaitable

from helpers import run

from engine.protocol import Chat, Permission, SessionStart
from engine.sharer import ConsentRequest
from engine.terminal import TerminalNovice

REQUEST = ConsentRequest(viewer_name="Bob", session_code="123 456", ticket_id=b"\0" * 16,
                         permissions=Permission.VIEW | Permission.CONTROL, peer="10.0.0.2:4000")


def test_questions_answers_chat_and_commands():
    async def scenario() -> str:
        read_end, write_end = os.pipe()
        out = io.StringIO()
        novice = TerminalNovice(out=out, stdin=os.fdopen(read_end))
        said: list[str] = []
        novice.on_chat = said.append
        novice.on_stop = lambda: said.append("<stop>")
        novice.on_end = lambda: said.append("<end>")
        novice.on_quit = lambda: said.append("<quit>")
        novice.start()
        typed = os.fdopen(write_end, "w", buffering=1)

        async def answered(question: Awaitable[bool], line: str) -> bool:
            asked = asyncio.ensure_future(question)
            await asyncio.sleep(0.1)
            typed.write(line + "\n")
            return await asked

        assert await answered(novice.consent(REQUEST), "y")
        novice.session_started(SessionStart(session_code="123 456", sharer_name="Alice",
                                            viewer_name="Bob", permissions=REQUEST.permissions))
        assert not await answered(novice.control_requested("Bob"), "no thanks")
        assert await answered(novice.control_requested("Bob"), "YES")
        for line in ("hello there", "  ", "/stop", "/end", "/quit"):
            typed.write(line + "\n")
        typed.close()
        for _ in range(100):
            if len(said) == 4:
                break
            await asyncio.sleep(0.05)
        assert said == ["hello there", "<stop>", "<end>", "<quit>"]
        novice.chat(Chat(sender="Bob", text="Click Start", time=0.0))
        return out.getvalue()

    shown = run(scenario())
    assert "Bob (10.0.0.2:4000) wants to see your screen." in shown
    assert "Session code: 123 456" in shown
    assert "Let them see your screen? [y/N]" in shown
    assert "press Esc or Ctrl+C on your desktop, or type /stop here" in shown
    assert "Let Bob take control? [y/N]" in shown
    assert "Bob: Click Start" in shown


def test_auto_accept_says_so():
    async def scenario() -> tuple[bool, bool, str]:
        out = io.StringIO()
        novice = TerminalNovice(auto_accept=True, out=out, stdin=io.StringIO(""))
        return await novice.consent(REQUEST), await novice.control_requested("Bob"), (
            out.getvalue())

    consent, control, shown = run(scenario())
    assert consent and control
    assert shown.count("Accepted automatically (--auto-accept).") == 2
