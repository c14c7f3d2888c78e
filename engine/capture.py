"""Frame sources: the novice's X display (`ScreenSource`) and the pointer that travels beside it.

`ScreenSource` grabs with mss (XShm: the frame is a zero-copy view of mss's buffer) and keeps a
second, small X connection (python-xlib) for what mss does not do:

- **damage** (XDamage on the root window): a grab happens only when something was drawn since the
  last one, so a static desktop costs a few round trips a second instead of 60 full grabs (x11vnc
  does the same); a grab at least every `SAFETY_INTERVAL` guards against drawing XDamage misses;
- **the screen's size**, read before each grab, so a resolution change is seen at once;
- **the cursor** (XFixes): position every tick, shape only when its serial changes, so pointer
  motion never dirties a tile.

A source belongs to the thread that made it (X connections are not shared between threads): the
sharer makes and uses it on its one capture thread. Whatever goes wrong with the display (it
vanished, it refused us) is a `CaptureError` with a sentence for people.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engine.frame_format import Frame

__all__ = ["CaptureError", "CursorImage", "FrameSource", "ScreenSource"]

# Damage tells us when to grab; this bounds how long a missed notification could hide a change.
SAFETY_INTERVAL = 1.0


class CaptureError(RuntimeError):
    """The display cannot be captured (gone, refused, or asked for a monitor it lacks)."""


@dataclass(frozen=True, slots=True)
class CursorImage:
    """Where the pointer is and what it looks like (`pixels`: BGRA, width × height).

    `serial` changes whenever the shape does, so a sender can send the pixels only then.
    """

    x: int
    y: int
    hot_x: int
    hot_y: int
    width: int
    height: int
    serial: int
    pixels: bytes


class FrameSource(Protocol):
    """What the sharer captures from: a display, or a synthetic one in benchmarks."""

    def grab(self, *, force: bool = False) -> Frame | None:
        """The current frame, or None when nothing was drawn since the last grab.

        The frame is valid until the next call. `force` grabs even without damage.
        """
        ...

    def cursor(self) -> CursorImage | None:
        """The pointer now, or None when this source cannot tell."""
        ...

    def close(self) -> None: ...


class ScreenSource:
    """One monitor of an X display (mss numbering: 0 is every monitor together, 1 the first)."""

    def __init__(self, display: str | None = None, monitor: int = 0) -> None:
        import mss
        from Xlib import X
        from Xlib import display as xdisplay
        from Xlib import error as xerror
        from Xlib.ext import damage

        # Everything python-xlib and mss raise when the display goes away or refuses a request.
        self._xerrors: tuple[type[BaseException], ...] = (
            xerror.DisplayError, xerror.ConnectionClosedError, xerror.XError,
            mss.ScreenShotError, OSError)
        self.display_name = display
        self.monitor = monitor
        try:
            self._x = xdisplay.Display(display)
        except self._xerrors as exc:
            raise CaptureError(f"cannot open the display {display or '$DISPLAY'}: {exc}") from None
        self._root = self._x.screen().root
        self._damage_event: int | None = None
        if self._x.has_extension("DAMAGE"):
            self._x.damage_query_version()
            self._damage = self._root.damage_create(damage.DamageReportNonEmpty)
            self._damage_event = self._x.extension_event.DamageNotify
        self._has_xfixes = self._x.has_extension("XFIXES")
        if self._has_xfixes:
            self._x.xfixes_query_version()
        self._mss_class = mss.MSS
        self._mss: Any = None
        self._region: dict[str, int] | None = None
        self._screen_size = (0, 0)
        self._last_grab = 0.0
        self._cursor_serial = -1
        self._cursor_pixels = b""
        self._none = X.NONE

    # --- frames -------------------------------------------------------------------------

    def grab(self, *, force: bool = False) -> Frame | None:
        try:
            damaged = self._take_damage()
            size = self._size()
            if size != self._screen_size:
                self._reopen(size)
                force = True
            now = time.monotonic()
            if not (force or damaged or now - self._last_grab >= SAFETY_INTERVAL):
                return None
            self._last_grab = now
            shot = self._mss.grab(self._region)
        except CaptureError:
            raise
        except self._xerrors as exc:
            raise CaptureError(f"the display {self.display_name or '$DISPLAY'} cannot be "
                               f"captured any more ({exc or type(exc).__name__})") from None
        width, height = shot.size
        return np.frombuffer(shot.raw, np.uint8).reshape(height, width, 4)

    def _take_damage(self) -> bool:
        """Whether anything was drawn since the last call; clears the record of it."""
        if self._damage_event is None:
            return True
        damaged = False
        while self._x.pending_events():
            if self._x.next_event().type == self._damage_event:
                damaged = True
        if damaged:
            self._x.damage_subtract(self._damage, self._none, self._none)
            # The subtract must reach the server before mss's grab (another connection): what is
            # drawn after it makes new damage and so a new grab; nothing falls in between.
            self._x.sync()
        return damaged

    def _size(self) -> tuple[int, int]:
        geometry = self._root.get_geometry()
        return int(geometry.width), int(geometry.height)

    def _reopen(self, size: tuple[int, int]) -> None:
        """(Re)connect mss: its monitor list is read once per connection."""
        if self._mss is not None:
            self._mss.close()
        self._mss = self._mss_class(display=self.display_name)
        monitors = self._mss.monitors
        if not 0 <= self.monitor < len(monitors):
            raise CaptureError(f"the display has {len(monitors) - 1} monitor(s); there is no "
                               f"monitor {self.monitor}")
        self._region = dict(monitors[self.monitor])
        self._screen_size = size

    # --- cursor -------------------------------------------------------------------------

    def cursor(self) -> CursorImage | None:
        if not self._has_xfixes:
            return None
        try:
            image = self._x.xfixes_get_cursor_image(self._root)
        except self._xerrors as exc:
            raise CaptureError(f"the display {self.display_name or '$DISPLAY'} cannot be "
                               f"captured any more ({exc})") from None
        serial = int(image.cursor_serial)
        if serial != self._cursor_serial:
            # CARD32 ARGB per pixel; little-endian bytes are B, G, R, A.
            self._cursor_pixels = np.asarray(image.cursor_image, "<u4").tobytes()
            self._cursor_serial = serial
        region = self._region or {"left": 0, "top": 0}
        return CursorImage(x=int(image.x) - region["left"], y=int(image.y) - region["top"],
                           hot_x=int(image.xhot), hot_y=int(image.yhot),
                           width=int(image.width), height=int(image.height), serial=serial,
                           pixels=self._cursor_pixels)

    def close(self) -> None:
        if self._mss is not None:
            self._mss.close()
            self._mss = None
        with contextlib.suppress(*self._xerrors):
            self._x.close()
