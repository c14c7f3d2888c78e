"""XTEST injection and the local-input watcher, on a real Xvfb with xev receiving the events."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator

import pytest
from xclient import Xev, XEvent, keys_down, marker, tap

from engine.inject import (
    InjectError,
    Injector,
    InputGate,
    LocalInputWatcher,
    inject_message,
    keysym_char,
)
from engine.protocol.messages import Buttons, Key, Pointer, Scroll
from engine.xvfb import Xvfb

ESCAPE, SHIFT_L, CONTROL_L = 0xFF1B, 0xFFE1, 0xFFE3
AT, EURO, CYRILLIC_ZHE, CYRILLIC_YA = 0x40, 0x20AC, 0x6D6, 0x6D1
CYRILLIC_EF, CYRILLIC_ZHE_CAPITAL = 0x6C6, 0x6F6


@pytest.fixture
def xev(xvfb: Xvfb) -> Iterator[Xev]:
    with Xev(xvfb) as client:
        yield client


@pytest.fixture
def injector(xvfb: Xvfb) -> Iterator[Injector]:
    with Injector(xvfb.display) as opened:
        opened.gate.open()
        yield opened


def type_text(injector: Injector, text: str) -> None:
    for char in text:
        tap(injector, ord(char) if ord(char) < 0x100 else 0x01000000 | ord(char))


def typed(events: list[XEvent]) -> str:
    """The characters xev's key presses stand for (modifier presses left out)."""
    chars = [keysym_char(e.keysym) for e in events if e.kind == "KeyPress"]
    return "".join(c for c in chars if c is not None)


def test_pointer_moves_and_clicks_arrive(injector: Injector, xev: Xev) -> None:
    assert injector.pointer(100, 200)
    assert xev.next() == XEvent(kind="MotionNotify", x=100, y=200)
    for buttons in (Buttons.LEFT, Buttons.MIDDLE, Buttons.RIGHT):
        assert inject_message(injector, Pointer(x=300, y=40, buttons=buttons))
        assert inject_message(injector, Pointer(x=300, y=40))
    got = [(e.kind, e.button) for e in marker(injector, xev) if e.kind != "MotionNotify"]
    assert got == [("ButtonPress", 1), ("ButtonRelease", 1), ("ButtonPress", 2),
                   ("ButtonRelease", 2), ("ButtonPress", 3), ("ButtonRelease", 3)]


def test_back_and_forward_bits_are_buttons_8_and_9(injector: Injector, xev: Xev) -> None:
    # Bits 8 and 16 are not in Buttons yet; the injector already maps them.
    assert injector.pointer(5, 5, 8) and injector.pointer(5, 5, 16) and injector.pointer(5, 5)
    got = [(e.kind, e.button) for e in marker(injector, xev) if e.kind != "MotionNotify"]
    assert got == [("ButtonPress", 8), ("ButtonPress", 9), ("ButtonRelease", 8),
                   ("ButtonRelease", 9)]


def test_pointer_outside_the_screen_is_clamped(injector: Injector, xev: Xev, xvfb: Xvfb) -> None:
    assert injector.pointer(-50, 10**6)
    assert xev.next() == XEvent(kind="MotionNotify", x=0, y=xvfb.height - 1)


def test_clamped_to_the_new_size_after_a_resolution_change(injector: Injector, xev: Xev,
                                                          xvfb: Xvfb) -> None:
    xvfb.resize(800, 600)
    assert injector.pointer(5000, 5000)
    assert xev.next() == XEvent(kind="MotionNotify", x=799, y=599)


def test_scroll_is_wheel_buttons(injector: Injector, xev: Xev) -> None:
    for dx, dy in ((0, 2), (0, -1), (1, 0), (-1, 0)):
        assert inject_message(injector, Scroll(dx=dx, dy=dy))
    presses = [e.button for e in marker(injector, xev) if e.kind == "ButtonPress"]
    assert presses == [5, 5, 4, 7, 6]


def test_typed_text_with_shifted_characters(injector: Injector, xev: Xev,
                                            xvfb: Xvfb) -> None:
    text = "Hello, World! ~{|}? 42 @#$%^&*()_+"
    type_text(injector, text)
    assert typed(marker(injector, xev)) == text
    assert keys_down(xvfb) == []  # the Shift pressed for capitals was let go


def test_held_shift_is_lifted_for_a_lowercase_keysym(injector: Injector, xev: Xev) -> None:
    # The expert holds Shift, the viewer sends 'a' (Caps Lock on the expert's side, say).
    assert inject_message(injector, Key(keysym=SHIFT_L, down=True))
    tap(injector, ord("a"))
    tap(injector, ord("B"))
    assert inject_message(injector, Key(keysym=SHIFT_L, down=False))
    assert typed(marker(injector, xev)) == "aB"


def test_caps_lock_on_the_novice_side_keeps_the_case(injector: Injector, xev: Xev) -> None:
    subprocess.run(["xdotool", "key", "Caps_Lock"], env=xev.environ(), check=True)
    type_text(injector, "aB")
    subprocess.run(["xdotool", "key", "Caps_Lock"], env=xev.environ(), check=True)
    assert typed(marker(injector, xev)) == "aB"


def test_altgr_symbols_on_a_german_layout(injector: Injector, xev: Xev) -> None:
    subprocess.run(["setxkbmap", "-layout", "de"], env=xev.environ(), check=True)
    tap(injector, AT)
    tap(injector, EURO)
    tap(injector, ord("z"))  # 'z' and 'y' swap places on a German keyboard
    events = marker(injector, xev)
    assert typed(events) == "@z" and [e.name for e in events if e.kind == "KeyPress"] == [
        "ISO_Level3_Shift", "at", "ISO_Level3_Shift", "EuroSign", "z"]
    assert [e.keycode for e in events if e.kind == "KeyPress" and e.name in ("at", "z")] == [
        24, 29]


def test_second_layout_active_on_the_novice_side(injector: Injector, xev: Xev,
                                                xvfb: Xvfb) -> None:
    from Xlib import X, display
    from Xlib.ext import xtest

    subprocess.run(["setxkbmap", "-layout", "us,ru", "-option", "grp:caps_toggle"],
                   env=xev.environ(), check=True)
    # The novice switches to the Russian layout (xdotool would switch back after its key).
    novice = display.Display(xvfb.display)
    try:
        for kind in (X.KeyPress, X.KeyRelease):
            xtest.fake_input(novice, kind, 66)  # Caps Lock, which switches layouts here
        novice.sync()
        assert novice.screen().root.query_pointer().mask >> 13 & 3 == 1
    finally:
        novice.close()
    tap(injector, CYRILLIC_EF)  # on the 'a' key in this layout
    tap(injector, CYRILLIC_ZHE_CAPITAL)  # Shift on the ';' key
    tap(injector, ord("a"))  # not in the active layout at all: a spare keycode
    events = [e for e in marker(injector, xev)
              if e.kind == "KeyPress" and e.name not in ("ISO_Next_Group", "Shift_L")]
    assert [(e.name, e.keycode) for e in events] == [
        ("Cyrillic_ef", 38), ("Cyrillic_ZHE", 47), ("a", events[-1].keycode)]
    assert events[-1].keycode not in (38, 47)


def test_symbols_missing_from_the_keymap_are_lent_a_keycode(injector: Injector, xev: Xev,
                                                            xvfb: Xvfb) -> None:
    from Xlib import display

    d = display.Display(xvfb.display)
    try:
        first = d.display.info.min_keycode
        before = d.get_keyboard_mapping(first, d.display.info.max_keycode - first + 1)
        type_text(injector, "жя")
        tap(injector, CYRILLIC_ZHE)
        events = marker(injector, xev)
        # Unicode keysyms (what a viewer sends for any character) and legacy Cyrillic ones.
        assert [e.name for e in events if e.kind == "KeyPress"] == [
            "U0436", "U044F", "Cyrillic_zhe"]
        assert typed(events) == "жя"
        injector.release_all()
        after = d.get_keyboard_mapping(first, d.display.info.max_keycode - first + 1)
        assert [list(r) for r in after] == [list(r) for r in before]
    finally:
        d.close()


def test_closed_gate_injects_nothing(xvfb: Xvfb, xev: Xev) -> None:
    with Injector(xvfb.display) as injector:
        assert not injector.gate.is_open
        assert not inject_message(injector, Pointer(x=10, y=10, buttons=Buttons.LEFT))
        assert not inject_message(injector, Key(keysym=ord("q"), down=True))
        assert not inject_message(injector, Scroll(dx=0, dy=3))
        assert marker(injector, xev) == []


def test_release_all_lets_go_of_keys_and_buttons(injector: Injector, xev: Xev,
                                                 xvfb: Xvfb) -> None:
    assert injector.pointer(50, 60, Buttons.LEFT | Buttons.RIGHT)
    assert injector.key(SHIFT_L, True) and injector.key(ord("x"), True)
    assert injector.key(CYRILLIC_YA, True)
    injector.gate.close()
    injector.release_all()
    events = marker(injector, xev)
    released = {(e.kind, e.button or e.keycode) for e in events if "Release" in e.kind}
    pressed = {(e.kind.replace("Press", "Release"), e.button or e.keycode)
               for e in events if "Press" in e.kind}
    assert pressed == released and len(pressed) == 5
    assert keys_down(xvfb) == []


def test_revoke_beats_ten_thousand_queued_events(injector: Injector, xev: Xev) -> None:
    """The novice presses Esc mid-flood: of 10,000 queued key events none is injected after."""
    queued = [Key(keysym=ord("a"), down=i % 2 == 0) for i in range(10_000)]
    stopped = threading.Event()
    with LocalInputWatcher(xev.display, injector, lambda reason: stopped.set(), lambda: None):
        results = [inject_message(injector, m) for m in queued[:100]]
        injector.sync()
        subprocess.run(["xdotool", "key", "Escape"], env=xev.environ(), check=True)
        assert stopped.wait(10)
        results += [inject_message(injector, m) for m in queued[100:]]
    assert results == [True] * 100 + [False] * 9_900
    events = marker(injector, xev)
    assert [e.name for e in events if e.kind == "KeyPress"] == ["a"] * 50 + ["Escape"]


def test_concurrent_revoke_lets_nothing_through_after_it(injector: Injector, xev: Xev) -> None:
    """The gate closes from another thread while the flood runs: whatever the timing, the
    events refused are all the last ones, and xev got exactly the ones injected."""
    # A key left down while the flood is refused would autorepeat, and xev would count more.
    subprocess.run(["xset", "r", "off"], env=xev.environ(), check=True)
    results: list[bool] = []
    flood = threading.Thread(target=lambda: results.extend(
        inject_message(injector, Key(keysym=ord("a"), down=i % 2 == 0))
        for i in range(10_000)))
    flood.start()
    while not results and flood.is_alive():
        threading.Event().wait(0.001)
    injector.gate.close()
    flood.join()
    injected = results.count(True)
    assert results == [True] * injected + [False] * (10_000 - injected)
    injector.release_all()
    events = marker(injector, xev)
    assert len([e for e in events if e.kind == "KeyPress"]) == (injected + 1) // 2


def test_physical_esc_and_ctrl_c_stop_control_but_injected_esc_does_not(
        injector: Injector, xev: Xev) -> None:
    reasons: list[str] = []
    stopped = threading.Event()

    def on_stop(reason: str) -> None:
        reasons.append(reason)
        stopped.set()

    with LocalInputWatcher(xev.display, injector, on_stop, lambda: None):
        tap(injector, ESCAPE)
        assert injector.key(CONTROL_L, True) and injector.key(ord("c"), True)  # Control_L + c
        injector.release_all()
        marker(injector, xev)  # both went through and came back as echoes
        assert reasons == [] and injector.gate.is_open
        subprocess.run(["xdotool", "key", "Escape"], env=xev.environ(), check=True)
        assert stopped.wait(10) and not injector.gate.is_open
        stopped.clear()
        injector.gate.open()
        subprocess.run(["xdotool", "key", "ctrl+c"], env=xev.environ(), check=True)
        assert stopped.wait(10) and not injector.gate.is_open
    assert reasons == ["the novice pressed Esc", "the novice pressed Ctrl+C"]


def test_novice_input_is_activity_and_echoes_are_not(injector: Injector, xev: Xev) -> None:
    active = threading.Event()
    with LocalInputWatcher(xev.display, injector, lambda reason: None, active.set):
        for x in range(10, 400, 7):
            assert injector.pointer(x, x // 2)
        type_text(injector, "echo ME")
        assert injector.scroll(0, 3)
        marker(injector, xev)
        injector.sync()
        assert not active.is_set()
        subprocess.run(["xdotool", "mousemove", "500", "500"], env=xev.environ(), check=True)
        assert active.wait(10)


def test_an_echo_counts_once_and_only_within_its_window(xvfb: Xvfb) -> None:
    from Xlib import X

    now = [0.0]
    with Injector(xvfb.display, echo_window=2.0, clock=lambda: now[0]) as injector:
        injector.gate.open()
        assert injector.pointer(7, 8) and injector.pointer(9, 10)
        assert injector.is_echo(X.MotionNotify, (7, 8))
        assert not injector.is_echo(X.MotionNotify, (7, 8))  # one event, one echo
        now[0] = 2.5
        assert not injector.is_echo(X.MotionNotify, (9, 10))  # came too late: the novice's


def test_gate_generation_counts_every_open_and_close() -> None:
    gate = InputGate()
    first = gate.open()
    assert gate.close() and not gate.close()
    assert gate.open() == first + 3
    with gate.admit(first) as admitted:
        assert not admitted
    with gate.admit(gate.generation) as admitted:
        assert admitted


def test_a_missing_display_is_a_sentence_saying_what_to_do() -> None:
    with pytest.raises(InjectError, match=r"cannot open the X display :9876 .*; start the desktop"):
        Injector(":9876")
