"""The expert's input on the novice's X display, and the novice's own input watched beside it.

`Injector` turns protocol input (pointer in screen pixels, buttons, wheel clicks, keysyms) into
XTEST fake input. Everything goes through XTEST, keys included: synthetic events sent with
XSendEvent are ignored by many programs. Keysyms, not keycodes, cross the wire, so the two
machines' layouts may differ: a keysym is found on the novice's keymap with the Shift and AltGr
(ISO_Level3_Shift) it needs, and one that is not on the keymap at all is mapped for a while onto
a spare keycode.

`InputGate` is the switch control turns on and off. It is checked, under its lock, immediately
before each fake event, so once `close()` returns no expert event reaches the display, however
many were already queued.

`LocalInputWatcher` watches every input event on the display (RECORD extension): the novice's
own Esc or Ctrl+C stops control, other novice input pauses the expert. X cannot tell injected
events from physical ones, so the injector remembers what it injected (keycode, button or
position, and a time window) and the watcher ignores those echoes.

Threads: `Injector` is used from one thread (the sharer's event loop); `InputGate` may be closed
from any thread; the watcher's callbacks run on the watcher's own thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from Xlib import XK, X, display, error
from Xlib.ext import record, xtest
from Xlib.protocol import rq

from engine.protocol.messages import Key, Pointer, Scroll

__all__ = [
    "ECHO_WINDOW",
    "InjectError",
    "Injector",
    "InputGate",
    "LocalInputWatcher",
    "inject_message",
]

log = logging.getLogger(__name__)

# How long an injected event may take to come back through RECORD before it no longer counts as
# an echo. Local delivery takes well under a millisecond; the margin covers a loaded machine.
ECHO_WINDOW = 2.0
# A wheel message carries a few clicks; the cap stops one message from queueing millions.
MAX_SCROLL_CLICKS = 50
# The watcher reports novice activity at most this often; the pause lasts about a second, so a
# tenth of that loses nothing and spares the event loop one callback per pointer motion.
ACTIVITY_INTERVAL = 0.1

# Buttons bits (engine.protocol.messages.Buttons) -> X button numbers. Bits 8 and 16 are the
# back and forward buttons (X 8 and 9), for when the protocol carries them.
BUTTON_BITS = {1: 1, 2: 2, 4: 3, 8: 8, 16: 9}
# Wheel clicks are buttons in X: (negative, positive) for each axis.
WHEEL_Y, WHEEL_X = (4, 5), (6, 7)

NO_SYMBOL = 0
# ISO_Level3_Shift (AltGr): in X11/keysymdef.h's XKB group, which Xlib.XK does not load.
LEVEL3_KEYSYM = 0xFE03
MODIFIER_KEYSYMS = frozenset({
    XK.XK_Shift_L, XK.XK_Shift_R, XK.XK_Control_L, XK.XK_Control_R, XK.XK_Caps_Lock,
    XK.XK_Shift_Lock, XK.XK_Meta_L, XK.XK_Meta_R, XK.XK_Alt_L, XK.XK_Alt_R, XK.XK_Super_L,
    XK.XK_Super_R, XK.XK_Hyper_L, XK.XK_Hyper_R, LEVEL3_KEYSYM, XK.XK_Mode_switch,
    XK.XK_Num_Lock,
})
# Core keymap columns by active XKB group (the core keymap shows the first two groups): plain,
# Shift, AltGr, AltGr+Shift. Keysyms of the third and fourth groups are lent a spare keycode.
GROUP_COLUMNS = {0: (0, 1, 4, 5), 1: (2, 3, 6, 7)}
# XKB reports the active group in bits 13-14 of the core state (XKB protocol, "Core state").
GROUP_SHIFT = 13


class InjectError(RuntimeError):
    """The display cannot take injected input (no X server, no XTEST)."""


class InputGate:
    """Open while the expert may drive; thread-safe. Each open or close starts a new generation.

    An operation that injects several events (Shift, key, Shift again) takes the generation once
    and stops at the first event refused, so a close never lets half an operation through.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._generation = 0

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def generation(self) -> int:
        return self._generation

    def open(self) -> int:
        with self._lock:
            self._open = True
            self._generation += 1
            return self._generation

    def close(self) -> bool:
        """Close the gate; True if it was open. Once this returns, no gated event is injected."""
        with self._lock:
            was_open = self._open
            self._open = False
            self._generation += 1
            return was_open

    @contextmanager
    def admit(self, generation: int) -> Iterator[bool]:
        """Hold the gate while one event is injected; the value says whether it may be."""
        with self._lock:
            yield self._open and self._generation == generation


@dataclass(frozen=True, slots=True)
class Echo:
    """One injected event, as RECORD will report it: event type and keycode, button or (x, y)."""

    kind: int
    detail: int | tuple[int, int]
    deadline: float


@dataclass(frozen=True, slots=True)
class Borrowed:
    """A spare keycode lent to a keysym that is not on the keymap, and what it held before."""

    keycode: int
    original: tuple[int, ...]


def open_display(name: str | None, extension: str, without: str) -> display.Display:
    """A connection to X display `name` that has `extension`, or an InjectError to show."""
    shown = name or os.environ.get("DISPLAY") or "(no DISPLAY set)"
    try:
        opened = display.Display(name)
    except (error.DisplayError, error.ConnectionClosedError, OSError) as exc:
        raise InjectError(f"cannot open the X display {shown} ({exc}); "
                          "start the desktop session or set DISPLAY") from exc
    if not opened.has_extension(extension):
        opened.close()
        raise InjectError(f"the X server {shown} has no {extension} extension, so {without}; "
                          f"enable {extension} in its configuration")
    return opened


def keysym_char(keysym: int) -> str | None:
    """The character a Latin-1 or Unicode keysym stands for (enough to tell letter case)."""
    if 0x20 <= keysym <= 0x7E or 0xA0 <= keysym <= 0xFF:
        return chr(keysym)
    if keysym & 0xFF000000 == 0x01000000:
        return chr(keysym & 0x00FFFFFF)
    return None


def produced(syms: tuple[int, ...], group: int, shift: bool, level3: bool, lock: bool) -> int:
    """The keysym a key with core mapping `syms` gives in `group` under these modifiers (XKB's
    reading: Caps Lock flips the case of letters only, and cancels against Shift)."""
    col = [*syms, *[NO_SYMBOL] * 8]
    plain, shifted, alt, alt_shifted = (col[c] for c in GROUP_COLUMNS[group])
    lo, hi = (alt, alt_shifted) if level3 and (alt or alt_shifted) else (plain, shifted)
    hi = hi or lo
    a, b = keysym_char(lo), keysym_char(hi)
    letter = a is not None and b is not None and a.lower() == a != b == a.upper()
    return hi if shift != (lock and letter) else lo


class Injector:
    """XTEST input on `display_name` (None: $DISPLAY), admitted by `gate`.

    The public methods return True when the whole operation was injected, False when the gate
    refused it (or, for a release, when nothing was held). `release_all` and `close` are not
    gated: they only ever let go.
    """

    def __init__(self, display_name: str | None = None, *, gate: InputGate | None = None,
                 echo_window: float = ECHO_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._display = open_display(display_name, "XTEST", "it cannot take the expert's input")
        self.gate = gate or InputGate()
        self._clock = clock
        self._echo_window = echo_window
        self._root = self._display.screen().root
        # Root size changes (RandR) arrive as ConfigureNotify; keymap changes as MappingNotify.
        self._root.change_attributes(event_mask=X.StructureNotifyMask)
        geometry = self._root.get_geometry()
        self._size = (int(geometry.width), int(geometry.height))
        self._echo_lock = threading.Lock()
        self._echoes: deque[Echo] = deque(maxlen=100_000)
        self._held_keys: dict[int, int] = {}  # keysym -> keycode the expert holds down
        # The same keycodes as one value the watcher's thread can read while this one changes.
        self.held_keycodes: frozenset[int] = frozenset()
        self._held_buttons: set[int] = set()
        self._borrowed: dict[int, Borrowed] = {}  # keysym -> spare keycode, oldest first
        self._unsent = False
        self._load_keymap()

    # --- keymap -----------------------------------------------------------------------------

    def _load_keymap(self) -> None:
        d = self._display
        first, last = d.display.info.min_keycode, d.display.info.max_keycode
        rows = d.get_keyboard_mapping(first, last - first + 1)
        self._syms: dict[int, tuple[int, ...]] = {
            first + i: tuple(int(s) for s in row) for i, row in enumerate(rows)}
        # group -> keysym -> (keycode, column), the plainest column first
        self._where: dict[int, dict[int, tuple[int, int]]] = {g: {} for g in GROUP_COLUMNS}
        for group, columns in GROUP_COLUMNS.items():
            for column in columns:
                for keycode, syms in sorted(self._syms.items()):
                    if column < len(syms) and syms[column] != NO_SYMBOL:
                        self._where[group].setdefault(syms[column], (keycode, column))
        modmap = d.get_modifier_mapping()
        self._shift_keycodes = [k for k in modmap[X.ShiftMapIndex] if k]
        self._level3_keycode = next((k for k, s in sorted(self._syms.items())
                                     if s and s[0] == LEVEL3_KEYSYM), None)
        self._level3_mask = next((1 << i for i, keys in enumerate(modmap)
                                  if self._level3_keycode in keys), 0)
        if not self._level3_mask:
            self._level3_keycode = None

    def _poll_server(self) -> None:
        """Take in keymap and screen-size changes the server announced."""
        d = self._display
        stale = False
        while d.pending_events():
            event = d.next_event()
            if event.type == X.MappingNotify:
                stale = True
            elif event.type == X.ConfigureNotify and event.window == self._root:
                self._size = (int(event.width), int(event.height))
        if stale:
            self._load_keymap()

    # --- the gated event --------------------------------------------------------------------

    def _remember(self, kind: int, detail: int | tuple[int, int]) -> None:
        with self._echo_lock:
            self._echoes.append(Echo(kind, detail, self._clock() + self._echo_window))

    def _fake(self, generation: int | None, kind: int, detail: int, x: int = 0,
              y: int = 0) -> bool:
        """Inject one event; `generation` None means ungated (letting go only)."""
        echo: int | tuple[int, int] = (x, y) if kind == X.MotionNotify else detail
        if generation is None:
            self._unsent = True
            self._remember(kind, echo)
            xtest.fake_input(self._display, kind, detail, x=x, y=y)
            return True
        with self.gate.admit(generation) as admitted:
            if admitted:
                self._unsent = True
                # Remembered first: the echo may come back before this call returns.
                self._remember(kind, echo)
                xtest.fake_input(self._display, kind, detail, x=x, y=y)
            return admitted

    @contextmanager
    def _operation(self) -> Iterator[int]:
        """One public call: the gate generation it runs under, and the events sent at its end."""
        try:
            yield self.gate.generation
        finally:
            # A round trip, not a flush: Xvfb (and Xorg when idle) may hold a fake event in its
            # input queue until the next request arrives, so a lone click would sit unseen.
            if self._unsent:
                self._unsent = False
                self._display.sync()

    # --- pointer ----------------------------------------------------------------------------

    def pointer(self, x: int, y: int, buttons: int = 0) -> bool:
        """Move to (x, y) in screen pixels, then press and release buttons to match `buttons`."""
        if not self.gate.is_open:  # the quick answer; each event is still checked under lock
            return False
        self._poll_server()
        # The server clamps to the screen anyway; clamping here keeps the echo recognisable.
        width, height = self._size
        x, y = min(max(int(x), 0), width - 1), min(max(int(y), 0), height - 1)
        with self._operation() as generation:
            if not self._fake(generation, X.MotionNotify, 0, x, y):
                return False
            wanted = {button for bit, button in BUTTON_BITS.items() if buttons & bit}
            for button in sorted(wanted - self._held_buttons):
                if not self._fake(generation, X.ButtonPress, button):
                    return False
                self._held_buttons.add(button)
            for button in sorted(self._held_buttons - wanted):
                if not self._fake(generation, X.ButtonRelease, button):
                    return False
                self._held_buttons.discard(button)
            return True

    def scroll(self, dx: int, dy: int) -> bool:
        """Wheel clicks: positive dy scrolls down, positive dx right (X buttons 4–7)."""
        if not self.gate.is_open:
            return False
        with self._operation() as generation:
            for amount, (back, forth) in ((dy, WHEEL_Y), (dx, WHEEL_X)):
                button = forth if amount > 0 else back
                for _ in range(min(abs(int(amount)), MAX_SCROLL_CLICKS)):
                    if not (self._fake(generation, X.ButtonPress, button)
                            and self._fake(generation, X.ButtonRelease, button)):
                        # Let go of a half-made click: nothing is left pressed by a refusal.
                        self._fake(None, X.ButtonRelease, button)
                        return False
            return True

    # --- keys -------------------------------------------------------------------------------

    def key(self, keysym: int, down: bool) -> bool:
        """Press or release the key that types `keysym` on the novice's keymap.

        Raises InjectError only when a keysym missing from the keymap finds no spare keycode.
        """
        if not self.gate.is_open:
            return False
        with self._operation() as generation:
            self._poll_server()
            if not down:
                keycode = self._held_keys.get(keysym)
                if keycode is None or not self._fake(generation, X.KeyRelease, keycode):
                    return False
                del self._held_keys[keysym]
                self.held_keycodes = frozenset(self._held_keys.values())
                return True
            if keysym in self._held_keys:
                # A repeat from the viewer: press again, as a held key repeats.
                return self._fake(generation, X.KeyPress, self._held_keys[keysym])
            return self._press(generation, keysym)

    def _press(self, generation: int, keysym: int) -> bool:
        keycode, changes = self._plan(keysym)
        if keycode is None:
            keycode = self._borrow(keysym)
        done: list[tuple[int, bool]] = []
        try:
            for modifier, press in changes:
                if not self._fake(generation, X.KeyPress if press else X.KeyRelease, modifier):
                    return False
                done.append((modifier, press))
            if not self._fake(generation, X.KeyPress, keycode):
                return False
            self._held_keys[keysym] = keycode
            self.held_keycodes = frozenset(self._held_keys.values())
            return True
        finally:
            # Put the modifiers back as they were, whatever happened: they are not ours to keep.
            for modifier, press in reversed(done):
                self._fake(None, X.KeyRelease if press else X.KeyPress, modifier)

    def _plan(self, keysym: int) -> tuple[int | None, list[tuple[int, bool]]]:
        """The keycode for `keysym` and the modifier presses (True) or releases (False) around
        it; no keycode when the keysym is not on the keymap or its modifiers are missing."""
        loan = self._borrowed.get(keysym)
        if loan is not None:
            return loan.keycode, []
        if keysym in MODIFIER_KEYSYMS:
            # The same in every group, and pressed as they are: the expert holds them on purpose.
            return self._where[0].get(keysym, (None, 0))[0], []
        state = int(self._root.query_pointer().mask)
        group = state >> GROUP_SHIFT & 3
        found = self._where.get(group, {}).get(keysym)
        if found is None:
            return None, []
        keycode, column = found
        shift, lock = bool(state & X.ShiftMask), bool(state & X.LockMask)
        level3 = bool(state & self._level3_mask)
        syms = self._syms[keycode]
        if produced(syms, group, shift, level3, lock) == keysym:
            return keycode, []
        want_level3 = column in GROUP_COLUMNS[group][2:]
        want_shift = next((s for s in (False, True)
                           if produced(syms, group, s, want_level3, lock) == keysym), None)
        if want_shift is None or (want_level3 and self._level3_keycode is None):
            return None, []
        changes: list[tuple[int, bool]] = []
        if want_shift != shift or want_level3 != level3:
            down = self._display.query_keymap()
            held = [k for k in range(8, 256) if down[k // 8] >> (k % 8) & 1]
            if want_shift and not shift:
                changes.append((self._shift_keycodes[0], True))
            elif shift and not want_shift:
                changes += [(k, False) for k in held if k in self._shift_keycodes]
            if want_level3 and not level3:
                assert self._level3_keycode is not None
                changes.append((self._level3_keycode, True))
            elif level3 and not want_level3:
                changes += [(k, False) for k in held if k == self._level3_keycode]
        return keycode, changes

    def _borrow(self, keysym: int) -> int:
        """Map `keysym` onto a spare keycode (one with no symbols), reusing the oldest loan."""
        lent = {b.keycode for b in self._borrowed.values()}
        spare = next((k for k, syms in sorted(self._syms.items())
                      if k not in lent and not any(syms)), None)
        if spare is None:
            free = [s for s, b in self._borrowed.items() if b.keycode not in
                    self._held_keys.values()]
            if not free:
                raise InjectError("no spare keycode is left to type this symbol; "
                                  "release some keys and try again")
            spare = self._return_loan(free[0])
        original = self._syms[spare]
        self._display.change_keyboard_mapping(spare, [(keysym, keysym)])
        self._borrowed[keysym] = Borrowed(spare, original)
        self._syms[spare] = (keysym, keysym)
        return spare

    def _return_loan(self, keysym: int) -> int:
        loan = self._borrowed.pop(keysym)
        padded = (*loan.original, *[NO_SYMBOL] * 2)[:max(2, len(loan.original))]
        self._display.change_keyboard_mapping(loan.keycode, [padded])
        self._syms[loan.keycode] = loan.original
        return loan.keycode

    # --- letting go -------------------------------------------------------------------------

    def release_all(self) -> None:
        """Release every key and button the expert holds and give back borrowed keycodes.

        Call it when control stops, when a pause starts and when the session ends, so nothing
        stays stuck on the novice's machine. Not gated: it only lets go.
        """
        for keycode in list(self._held_keys.values()):
            self._fake(None, X.KeyRelease, keycode)
        self._held_keys.clear()
        self.held_keycodes = frozenset()
        for button in sorted(self._held_buttons):
            self._fake(None, X.ButtonRelease, button)
        self._held_buttons.clear()
        for keysym in list(self._borrowed):
            self._return_loan(keysym)
        self._display.sync()

    def sync(self) -> None:
        """Wait until the server has processed everything injected so far."""
        self._display.sync()

    def close(self) -> None:
        self.gate.close()
        try:
            self.release_all()
        finally:
            self._display.close()

    # --- echoes, for the watcher (any thread) -----------------------------------------------

    def is_echo(self, kind: int, detail: int | tuple[int, int]) -> bool:
        """Whether an event RECORD reported is one this injector made (and forget it if so)."""
        now = self._clock()
        with self._echo_lock:
            while self._echoes and self._echoes[0].deadline < now:
                self._echoes.popleft()
            for i, echo in enumerate(self._echoes):
                if echo.kind == kind and echo.detail == detail:
                    del self._echoes[i]
                    return True
        # Otherwise, the server's autorepeat of a key the expert holds.
        return kind == X.KeyPress and detail in self.held_keycodes

    def __enter__(self) -> Injector:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LocalInputWatcher:
    """Watches the novice's own mouse and keyboard on `display_name` while control is on.

    While `injector.gate` is open: the novice's Esc, or Ctrl+C, closes the gate at once (on the
    watcher's thread, so queued expert input stops before any callback runs) and then calls
    `on_stop(reason)`; any other novice input calls `on_activity()` (at most every
    ACTIVITY_INTERVAL seconds). Echoes of the injector's own events call nothing, so the
    expert's Esc reaches the novice's program without stopping control.

    Both callbacks run on the watcher's thread: hop to the event loop with
    `loop.call_soon_threadsafe`. They must not use the injector, whose display belongs to the
    loop's thread.
    """

    def __init__(self, display_name: str | None, injector: Injector,
                 on_stop: Callable[[str], None], on_activity: Callable[[], None]) -> None:
        self._name = display_name
        self._injector = injector
        self._on_stop = on_stop
        self._on_activity = on_activity
        self._last_activity = float("-inf")
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._context = 0
        why = "the novice's Esc cannot be watched"
        # One connection blocks in RECORD; the other asks about keys and stops the recording.
        self._record = open_display(display_name, "RECORD", why)
        try:
            self._control = open_display(display_name, "RECORD", why)
        except InjectError:
            self._record.close()
            raise

    def start(self) -> None:
        """Start watching; returns once the server records, so no later event is missed."""
        self._context = self._record.record_create_context(0, [record.AllClients], [{
            "core_requests": (0, 0), "core_replies": (0, 0),
            "ext_requests": (0, 0, 0, 0), "ext_replies": (0, 0, 0, 0),
            "delivered_events": (0, 0), "device_events": (X.KeyPress, X.MotionNotify),
            "errors": (0, 0), "client_started": False, "client_died": False,
        }])
        self._thread = threading.Thread(target=self._run, name="ra-local-input", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or not self._thread.is_alive():
            raise InjectError("the X server did not start recording the novice's input; "
                              "stop control and try again")

    def _run(self) -> None:
        try:
            self._record.record_enable_context(self._context, self._receive)
        except Exception:
            log.exception("watching local input failed")
        finally:
            self._ready.set()

    def _receive(self, reply: Any) -> None:
        if reply.category == record.StartOfData:
            self._ready.set()
            return
        if reply.category != record.FromServer or reply.client_swapped:
            return
        data = reply.data
        while data:
            event, data = rq.EventField(None).parse_binary_value(
                data, self._record.display, None, None)
            try:
                self._event(event)
            except Exception:
                log.exception("a local input event could not be handled")

    def _event(self, event: Any) -> None:
        kind = event.type
        detail = (int(event.root_x), int(event.root_y)) if kind == X.MotionNotify \
            else int(event.detail)
        if self._injector.is_echo(kind, detail) or not self._injector.gate.is_open:
            return
        if kind == X.KeyPress:
            keysym = self._control.get_keyboard_mapping(int(event.detail), 1)[0][0]
            reason = None
            if keysym == XK.XK_Escape:
                reason = "the novice pressed Esc"
            elif keysym in (XK.XK_c, XK.XK_C) and event.state & X.ControlMask:
                reason = "the novice pressed Ctrl+C"
            if reason is not None:
                if self._injector.gate.close():
                    self._on_stop(reason)
                return
        now = time.monotonic()
        if now - self._last_activity >= ACTIVITY_INTERVAL:
            self._last_activity = now
            self._on_activity()

    def stop(self) -> None:
        """Stop watching and close the watcher's display connections."""
        if self._thread is not None:
            self._control.record_disable_context(self._context)
            self._control.flush()
            self._thread.join(10)
            self._record.record_free_context(self._context)
            self._thread = None
        self._record.close()
        self._control.close()

    def __enter__(self) -> LocalInputWatcher:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def inject_message(injector: Injector, message: Pointer | Key | Scroll) -> bool:
    """Hand one protocol input message to `injector`; whether it was injected.

    The caller asks `ControlMachine.may_inject` first; the injector's gate still has the last
    word, so a revoke that lands in between wins.
    """
    if isinstance(message, Pointer):
        return injector.pointer(message.x, message.y, int(message.buttons))
    if isinstance(message, Key):
        return injector.key(message.keysym, message.down)
    return injector.scroll(message.dx, message.dy)
