"""`ra-view` as people run it: a real xcb window on one private X display (B) showing the
desktop of another (A), shared by a real sharer over TLS on 127.0.0.1. The screenshot of B must
show A's content, scaled, at the right place; once the novice grants control, what is typed
into the window on B lands in a program on A."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import mss
import numpy as np
from helpers import invitation
from PIL import Image
from xclient import Xev

from engine.capture import ScreenSource
from engine.identity import Identity
from engine.invitations import InvitationStore
from engine.protocol import SessionStart
from engine.sharer import ConsentRequest, Sharer, SharerEvents
from engine.xvfb import Xvfb

BACKGROUND = (0x20, 0x40, 0x80)  # r, g, b of display A's root window
XTERM_AT = (100, 120)  # where the terminal sits on A


class Novice(SharerEvents):
    def __init__(self) -> None:
        self.started: list[SessionStart] = []
        self.asked: list[ConsentRequest] = []
        self.controlled = False

    async def control_requested(self, viewer_name: str) -> bool:
        return viewer_name == "Bob"

    def control(self, controlled: bool, reason: str) -> None:
        self.controlled = controlled

    async def consent(self, request: ConsentRequest) -> bool:
        self.asked.append(request)
        return True

    def session_started(self, start: SessionStart) -> None:
        self.started.append(start)


def grab(display: str) -> np.ndarray:
    """The display's pixels as RGB."""
    with mss.MSS(display=display) as grabber:
        shot = grabber.grab(grabber.monitors[0])
        bgrx = np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4)
        return bgrx[..., 2::-1].copy()


def box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the true pixels, inclusive; None if there are none."""
    rows, columns = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not len(rows):
        return None
    return int(columns[0]), int(rows[0]), int(columns[-1]), int(rows[-1])


def xdotool(server: Xvfb, *args: str) -> None:
    subprocess.run(["xdotool", *args], env=server.environ(), check=True, timeout=20,
                   capture_output=True)


async def take_control_and_type(a: Xvfb, b: Xvfb, novice: Novice) -> None:
    """Session ▸ Take Control on B, then a click and keys on the canvas, seen by xev on A."""
    with Xev(a) as xev:
        # No window manager on B to give the window the keyboard: do what one would.
        xdotool(b, "search", "--sync", "--name", "Remote Assistance", "windowfocus", "--sync")
        xdotool(b, "mousemove", "300", "300")
        xdotool(b, "key", "ctrl+shift+t")
        for _ in range(200):
            if novice.controlled:
                break
            await asyncio.sleep(0.05)
        assert novice.controlled, "control was never granted"
        xdotool(b, "mousemove", "310", "320", "click", "1")
        xdotool(b, "key", "a", "F12")
        events = await asyncio.to_thread(xev.until, "F12", 20)
    assert [e.name for e in events if e.kind == "KeyPress"] == ["a", "F12"]
    assert [e.button for e in events if e.kind == "ButtonPress"] == [1]


def test_the_window_on_display_b_shows_display_a(xvfb: Xvfb, store: InvitationStore,
                                                  identity: Identity, tmp_path: Path) -> None:
    a = xvfb
    subprocess.run(["xsetroot", "-solid", "#" + bytes(BACKGROUND).hex()],
                   env=a.environ(),
                   check=True, timeout=20)
    xterm = subprocess.Popen(["xterm", "-geometry", f"40x10+{XTERM_AT[0]}+{XTERM_AT[1]}",
                              "-bg", "white", "+bc", "-xrm", "*cursorBlink: false"],
                             env=a.environ(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    novice = Novice()
    password = tmp_path / "password"
    password.write_text("pw\n")
    screenshot = tmp_path / "display-b.png"

    async def scenario(b: Xvfb) -> tuple[int, int, int, int, int, int, int, int]:
        subprocess.run(["xdotool", "search", "--sync", "--class", "xterm"], env=a.environ(),
                       check=True, timeout=20, capture_output=True)
        sharer = Sharer(identity=identity, store=store, name="Alice", events=novice,
                        source=lambda: ScreenSource(a.display), display=a.display)
        await sharer.start("127.0.0.1", 0)
        ticket = tmp_path / "alice.rainvite"
        invitation(store, identity, sharer.port).save(ticket)
        environment = {**os.environ, **b.environ(), "QT_QPA_PLATFORM": "xcb"}
        viewer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "viewer.expert", str(ticket), "--password-file",
            str(password), "--name", "Bob", env=environment,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            found = None
            for _ in range(300):
                await asyncio.sleep(0.1)
                if viewer.returncode is not None:
                    break
                pixels = grab(b.display)
                desktop = box(np.all(pixels == BACKGROUND, axis=2))
                if desktop is None:
                    continue
                left, top, right, bottom = desktop
                inside = pixels[top:bottom + 1, left:right + 1]
                terminal = box(np.all(inside == 255, axis=2))
                if terminal is not None:
                    found = (*desktop, *terminal)
                    Image.fromarray(pixels).save(screenshot)
                    break
            assert found is not None, "display B never showed display A's desktop"
            assert novice.started and novice.started[0].viewer_name == "Bob"
            await take_control_and_type(a, b, novice)
            return found
        finally:
            if viewer.returncode is None:
                viewer.terminate()
            stderr = await viewer.stderr.read() if viewer.stderr else b""
            await viewer.wait()
            await sharer.close()
            assert b"Traceback" not in stderr, stderr.decode()

    try:
        with Xvfb(1280, 1024) as b:
            left, top, right, bottom, t_left, t_top, _, _ = asyncio.run(
                asyncio.wait_for(scenario(b), 90))
    finally:
        xterm.kill()
        xterm.wait()
    # The desktop keeps A's shape (fitted), and the terminal is where it is on A, scaled.
    width, height = right - left + 1, bottom - top + 1
    scale = width / 1024
    assert abs(height - 768 * scale) <= 2
    assert 0.3 < scale <= 1.0
    assert abs(t_left - XTERM_AT[0] * scale) <= 3
    assert abs(t_top - XTERM_AT[1] * scale) <= 3
