"""Taking control through the whole system: the expert's Viewer over TLS, the sharer's Handover,
XTEST on a private Xvfb, and a real X client (xev) receiving what was injected."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import invitation, run, until
from xclient import Xev, XEvent, keys_down

from engine.capture import ScreenSource
from engine.client import Client, Viewer, ViewerEvents
from engine.control import ControlState
from engine.invitations import InvitationStore
from engine.protocol import Buttons, Chat, Key, Permission
from engine.sharer import ConsentRequest, Sharer, SharerEvents
from engine.xvfb import Xvfb

XK_a, XK_A, XK_Escape, XK_Shift_L = 0x61, 0x41, 0xFF1B, 0xFFE1
XK_Cyrillic_ef = 0x6C6  # ф: on no key of the default US keymap


class Novice(SharerEvents):
    def __init__(self, *, allow_control: bool = True) -> None:
        self.allow_control = allow_control
        self.asked: list[str] = []
        self.control_changes: list[tuple[bool, str]] = []

    async def consent(self, request: ConsentRequest) -> bool:
        return True

    async def control_requested(self, viewer_name: str) -> bool:
        self.asked.append(viewer_name)
        return self.allow_control

    def control(self, controlled: bool, reason: str) -> None:
        self.control_changes.append((controlled, reason))


class Expert(ViewerEvents):
    def __init__(self) -> None:
        self.control_changes: list[tuple[bool, str]] = []
        self.pauses: list[str] = []
        self.chats: list[Chat] = []

    def control(self, granted: bool, reason: str) -> None:
        self.control_changes.append((granted, reason))

    def paused(self, reason: str, seconds: float) -> None:
        self.pauses.append(reason)


@contextlib.asynccontextmanager
async def session(xvfb: Xvfb, store: InvitationStore, identity: Any, novice: Novice,
                  **options: Any) -> AsyncIterator[tuple[Sharer, Viewer, Expert]]:
    permissions = options.pop("permissions", Permission.VIEW | Permission.CONTROL)
    sharer = Sharer(identity=identity, store=store, name="Alice", events=novice,
                    source=lambda: ScreenSource(xvfb.display), display=xvfb.display,
                    **options)
    await sharer.start("127.0.0.1", 0)
    ticket = invitation(store, identity, sharer.port, permissions=permissions)
    expert = Expert()
    viewer = Viewer(await Client(ticket, password="pw", name="Bob").connect(), expert)
    task = asyncio.ensure_future(viewer.run())
    try:
        yield sharer, viewer, expert
    finally:
        if not task.done():
            await viewer.close()
        await asyncio.gather(task, return_exceptions=True)
        await sharer.close()


async def take_control(viewer: Viewer, expert: Expert) -> None:
    before = len(expert.control_changes)
    await viewer.request_control()
    await until(lambda: len(expert.control_changes) > before)
    assert expert.control_changes[-1][0], expert.control_changes
    assert viewer.controlling


def xdotool(xvfb: Xvfb, *args: str) -> None:
    subprocess.run(["xdotool", *args], env=xvfb.environ(), check=True, timeout=20)


def test_granted_control_moves_clicks_scrolls_and_types(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice()
        with Xev(xvfb) as xev:
            async with session(xvfb, store, identity, novice) as (_, viewer, expert):
                await take_control(viewer, expert)
                assert novice.asked == ["Bob"]
                assert novice.control_changes[-1][0]
                await viewer.pointer(200, 150)
                await viewer.pointer(200, 150, Buttons.LEFT)
                await viewer.pointer(200, 150)
                await viewer.scroll(0, 2)
                # Keysyms as a viewer sends them: Shift, then the shifted letter's keysym.
                for keysym in (XK_Shift_L, XK_A):
                    await viewer.key(keysym, True)
                for keysym in (XK_A, XK_Shift_L):
                    await viewer.key(keysym, False)
                await viewer.key(XK_Cyrillic_ef, True)
                await viewer.key(XK_Cyrillic_ef, False)
                events = await asyncio.to_thread(xev.until, "Cyrillic_ef")
        assert (events[0].kind, events[0].x, events[0].y) == ("MotionNotify", 200, 150)
        buttons = [(e.kind, e.button) for e in events if e.kind.startswith("Button")]
        # Two wheel clicks down: X button 5.
        assert buttons == [("ButtonPress", 1), ("ButtonRelease", 1),
                           ("ButtonPress", 5), ("ButtonRelease", 5),
                           ("ButtonPress", 5), ("ButtonRelease", 5)]
        pressed = [e.keysym for e in events if e.kind == "KeyPress"]
        # ф is on no key: it comes through a keycode lent for it.
        assert pressed == [XK_Shift_L, XK_A, XK_Cyrillic_ef], pressed
        await asyncio.sleep(0)
        assert keys_down(xvfb) == []

    run(scenario())


def test_nothing_is_injected_without_a_grant(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice(allow_control=False)
        with Xev(xvfb) as xev:
            async with session(xvfb, store, identity, novice) as (sharer, viewer, expert):
                # Input before any request: the viewer sends it anyway (a hostile viewer would).
                await viewer.session.send(_key(XK_a, True))
                await viewer.request_control()
                await until(lambda: bool(expert.control_changes))
                assert expert.control_changes == [(False, "Alice declined to give control")]
                await viewer.session.send(_key(XK_a, True))
                await viewer.session.send(_key(XK_a, False))
                assert sharer.handover is not None
                assert sharer.handover.state is ControlState.VIEWING
            await asyncio.sleep(0.3)
            with pytest.raises(AssertionError, match="received nothing"):
                xev.next(timeout=0.5)

    run(scenario())


def test_a_view_only_invitation_refuses_control_with_a_reason(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice()
        async with session(xvfb, store, identity, novice,
                           permissions=Permission.VIEW) as (_, viewer, expert):
            await viewer.request_control()
            await until(lambda: bool(expert.control_changes))
            granted, reason = expert.control_changes[0]
            assert not granted and "view-only" in reason
            assert novice.asked == []

    run(scenario())


def test_the_novice_stop_button_beats_a_flood_of_queued_input(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice()
        with Xev(xvfb) as xev:
            async with session(xvfb, store, identity, novice) as (sharer, viewer, expert):
                await take_control(viewer, expert)
                # 10,000 key events reach the sharer's buffer at once; Stop Control is pressed
                # as soon as the first of them has been injected.
                for _ in range(5000):
                    viewer.session.post(_key(XK_a, True))
                    viewer.session.post(_key(XK_a, False))
                first = await asyncio.to_thread(xev.next)
                sharer.stop_control()
                await until(lambda: len(expert.control_changes) == 2)
                assert expert.control_changes[-1] == (False, "Alice pressed Stop Control")
                injected_before_stop = 1 + len(await asyncio.to_thread(_drain, xev))
                await asyncio.sleep(1.0)
                after = len(await asyncio.to_thread(_drain, xev))
        assert first.kind == "KeyPress"
        assert injected_before_stop < 10_000
        assert after == 0, f"{after} events arrived after Stop Control"
        assert keys_down(xvfb) == []

    run(scenario())


def test_the_novices_esc_stops_control_and_the_experts_does_not(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice()
        with Xev(xvfb):
            async with session(xvfb, store, identity, novice) as (_, viewer, expert):
                await take_control(viewer, expert)
                await viewer.key(XK_Escape, True)
                await viewer.key(XK_Escape, False)
                await asyncio.sleep(0.5)
                assert viewer.controlling and len(expert.control_changes) == 1
                # The novice's own Esc, from another X client (XTEST, like a keyboard).
                await asyncio.to_thread(xdotool, xvfb, "key", "Escape")
                await until(lambda: len(expert.control_changes) == 2)
                assert expert.control_changes[-1] == (False, "the novice pressed Esc")
                assert not viewer.controlling
                assert novice.control_changes[-1] == (False, "the novice pressed Esc")
                # The session goes on, view-only; control can be asked for again.
                await take_control(viewer, expert)
                await asyncio.to_thread(xdotool, xvfb, "key", "ctrl+c")
                await until(lambda: len(expert.control_changes) == 4)
                assert expert.control_changes[-1] == (False, "the novice pressed Ctrl+C")

    run(scenario())


def test_the_novices_mouse_pauses_the_expert_who_is_told_why(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice()
        with Xev(xvfb) as xev:
            async with session(xvfb, store, identity, novice, grace=5.0) as (
                    _, viewer, expert):
                await take_control(viewer, expert)
                await viewer.key(XK_Shift_L, True)
                await until(lambda: bool(keys_down(xvfb)))
                await asyncio.to_thread(xdotool, xvfb, "mousemove", "40", "40")
                await until(lambda: bool(expert.pauses))
                assert "the novice is using the mouse or keyboard" in expert.pauses[0]
                # What the expert held is let go, and their input waits out the pause.
                await until(lambda: keys_down(xvfb) == [])
                await viewer.key(XK_a, True)
                await viewer.key(XK_a, False)
                await asyncio.sleep(0.5)
                seen = [e.name for e in await asyncio.to_thread(_drain, xev)]
                assert "a" not in seen and viewer.controlling

    run(scenario())


def _drain(xev: Xev) -> list[XEvent]:
    """What xev received until it has been quiet for 0.3 s."""
    events = []
    with contextlib.suppress(AssertionError):
        while True:
            events.append(xev.next(timeout=0.3))
    return events


def test_keys_held_by_the_expert_are_released_when_the_session_ends(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice()
        async with session(xvfb, store, identity, novice) as (sharer, viewer, expert):
            await take_control(viewer, expert)
            await viewer.key(XK_Shift_L, True)
            await viewer.pointer(10, 10, Buttons.RIGHT)
            await until(lambda: bool(keys_down(xvfb)))
            await viewer.close()
            await until(lambda: sharer.session is None)
        assert keys_down(xvfb) == []
        assert novice.control_changes[-1] == (False, "the session ended")

    run(scenario())


def _key(keysym: int, down: bool) -> Key:
    return Key(keysym=keysym, down=down)
