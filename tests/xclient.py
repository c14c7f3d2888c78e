"""A real X client on the test display: xev over the whole screen, its events read back."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from dataclasses import dataclass
from types import TracebackType

from Xlib import display

from engine.inject import Injector
from engine.xvfb import Xvfb

F12 = 0xFFC9

KINDS = ("KeyPress", "KeyRelease", "ButtonPress", "ButtonRelease", "MotionNotify")
HEAD = re.compile(r"^(\w+) event, serial")
KEY = re.compile(r"keycode (\d+) \(keysym 0x([0-9a-f]+), ([^)]*)\)")
BUTTON = re.compile(r"button (\d+),")
ROOT = re.compile(r"root:\((-?\d+),(-?\d+)\)")
LAST_LINE = {"KeyPress": "XFilterEvent", "KeyRelease": "XFilterEvent",
             "ButtonPress": "same_screen", "ButtonRelease": "same_screen",
             "MotionNotify": "same_screen", "EnterNotify": "focus"}
STATE = re.compile(r"state 0x([0-9a-f]+),")


@dataclass(frozen=True, slots=True)
class XEvent:
    kind: str
    keycode: int = 0
    keysym: int = 0
    name: str = ""
    button: int = 0
    x: int = 0
    y: int = 0
    state: int = 0


class Xev:
    """``with Xev(xvfb) as xev``: xev's window fills the screen, so it has the pointer and, with
    the server's default PointerRoot focus, the keyboard; `next()` returns what it received."""

    def __init__(self, xvfb: Xvfb) -> None:
        self._xvfb = xvfb
        self._events: queue.Queue[XEvent] = queue.Queue()
        self._entered = threading.Event()

    def __enter__(self) -> Xev:
        x = self._xvfb
        self._process = subprocess.Popen(
            ["xev", "-geometry", f"{x.width}x{x.height}+0+0",
             "-event", "keyboard", "-event", "mouse", "-event", "button"],
            env=x.environ(), stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self._entered.wait(10), "xev did not show its window"
        return self

    def _read(self) -> None:
        # xev prints the blank line before an event, not after it, so an event is complete at
        # the line xev always prints last for its kind.
        assert self._process.stdout is not None
        block: list[str] = []
        for line in self._process.stdout:
            block = [line] if HEAD.match(line) else [*block, line]
            kind = block[0].split(" ", 1)[0]
            last = LAST_LINE.get(kind)
            if last is not None and last in line:
                self._parse(" ".join(block))
                block = []

    def _parse(self, text: str) -> None:
        head = HEAD.match(text)
        if head is None:
            return
        kind = head.group(1)
        if kind == "EnterNotify":
            self._entered.set()
        if kind not in KINDS:
            return
        key, button = KEY.search(text), BUTTON.search(text)
        root, state = ROOT.search(text), STATE.search(text)
        assert root is not None
        self._events.put(XEvent(
            kind=kind,
            keycode=int(key.group(1)) if key else 0,
            keysym=int(key.group(2), 16) if key else 0,
            name=key.group(3) if key else "",
            button=int(button.group(1)) if button and not key else 0,
            x=int(root.group(1)), y=int(root.group(2)),
            state=int(state.group(1), 16) if state else 0))

    def next(self, timeout: float = 10) -> XEvent:
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"xev received nothing in {timeout} s") from None

    def until(self, last: XEvent | str, timeout: float = 10) -> list[XEvent]:
        """Events up to and including the first KeyPress named `last` (or equal to it)."""
        seen: list[XEvent] = []
        while True:
            event = self.next(timeout)
            seen.append(event)
            if event == last or (event.kind == "KeyPress" and event.name == last):
                return seen

    @property
    def display(self) -> str:
        return self._xvfb.display

    def environ(self) -> dict[str, str]:
        return self._xvfb.environ()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._process.terminate()
        self._process.wait(5)
        self._reader.join(5)


def tap(injector: Injector, keysym: int) -> None:
    assert injector.key(keysym, True) and injector.key(keysym, False)


def marker(injector: Injector, xev: Xev) -> list[XEvent]:
    """Everything xev received before F12, which the injector sends (gate reopened) last."""
    if not injector.gate.is_open:
        injector.gate.open()
    tap(injector, F12)
    return [e for e in xev.until("F12") if e.name != "F12"]


def keys_down(xvfb: Xvfb) -> list[int]:
    """The keycodes the X server holds down now."""
    d = display.Display(xvfb.display)
    try:
        bitmap = d.query_keymap()
        return [k for k in range(8, 256) if bitmap[k // 8] >> (k % 8) & 1]
    finally:
        d.close()
