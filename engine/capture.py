"""Frame sources: the novice's X display (`ScreenSource`) and the pointer that travels beside it.

`ScreenSource` grabs with mss (XShm) into a frame it keeps, and keeps a second, small X
connection (python-xlib) for what mss does not do:

- **damage** (XDamage on the root window): a grab happens only when something was drawn since the
  last one, so a static desktop costs one pointer query a tick instead of a full grab (x11vnc
  does the same). XDamage also says where: while the damage is small, only the damaged regions
  are grabbed, into the frame kept from the last whole grab (on 1080p Xvfb a whole grab costs
  1.4 ms, the X server's copy and then mss's; the bench's 192×16 counter 0.04 ms). A whole
  grab at least every `SAFETY_INTERVAL` guards against drawing XDamage misses;
- **the screen's size**, from the root window's ConfigureNotify (RandR sends one on every
  resolution change), so a resize is seen before the next grab;
- **the cursor**: its position each tick (QueryPointer), its shape (XFixes) only after XFixes
  says it changed, so pointer motion never dirties a tile.

Everything but the pointer position arrives as events on that connection, drained each tick
without a round trip.

A source belongs to the thread that made it (X connections are not shared between threads): the
sharer makes and uses it on its one capture thread. Whatever goes wrong with the display (it
vanished, it refused us) is a `CaptureError` with a sentence for people.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engine.frame_format import Frame

__all__ = ["CaptureError", "CursorImage", "FrameSource", "ScreenSource"]

# Damage tells us when and where to grab; this bounds how long a missed notification could
# hide a change: the whole screen is grabbed at least this often while anything is drawn.
SAFETY_INTERVAL = 1.0
# Damaged rectangles nearer each other than this are grabbed as one region.
MERGE_GAP = 32
# More regions than this are grabbed as their bounding box; more rectangles than
# MAX_RECTANGLES between two grabs (a busy screen) as the whole screen.
MAX_REGIONS = 16
MAX_RECTANGLES = 512
# Regions covering more than this share of the screen: one whole grab is cheaper.
WHOLE_GRAB_SHARE = 0.5

# A region of the frame: left, top, width, height.
Region = tuple[int, int, int, int]


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

    def pending(self) -> bool:
        """Whether the source already knows of a change the next `grab` will pick up."""
        ...

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when the source has news (None: poll)."""
        ...

    def close(self) -> None: ...


def _near(a: list[int], b: list[int]) -> bool:
    """Whether boxes (x0, y0, x1, y1) overlap or lie within MERGE_GAP of each other."""
    return (a[0] - MERGE_GAP < b[2] and b[0] - MERGE_GAP < a[2]
            and a[1] - MERGE_GAP < b[3] and b[1] - MERGE_GAP < a[3])


def _bounding(boxes: list[list[int]]) -> list[int]:
    return [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]


class ScreenSource:
    """One monitor of an X display (mss numbering: 0 is every monitor together, 1 the first)."""

    def __init__(self, display: str | None = None, monitor: int = 0) -> None:
        import mss
        from Xlib import X
        from Xlib import display as xdisplay
        from Xlib import error as xerror
        from Xlib.ext import damage, xfixes

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
        self._root.change_attributes(event_mask=X.StructureNotifyMask)
        self._configure_event = X.ConfigureNotify
        self._damage_event: int | None = None
        if self._x.has_extension("DAMAGE"):
            self._x.damage_query_version()
            self._damage = self._root.damage_create(damage.DamageReportDeltaRectangles)
            self._damage_event = self._x.extension_event.DamageNotify
        self._cursor_event: int | None = None
        if self._x.has_extension("XFIXES"):
            self._x.xfixes_query_version()
            self._x.xfixes_select_cursor_input(self._root, xfixes.XFixesDisplayCursorNotifyMask)
            self._cursor_event = self._x.extension_event.DisplayCursorNotify[0]
        self._none = X.NONE
        self._mss_class = mss.MSS
        self._mss: Any = None
        self._region = {"left": 0, "top": 0}
        geometry = self._root.get_geometry()
        self._size = (int(geometry.width), int(geometry.height))
        self._grabbed_size = (0, 0)
        self._damaged = True
        # Damaged rectangles (x0, y0, x1, y1, root coordinates) since the last grab; None
        # when there were too many to track.
        self._rectangles: list[tuple[int, int, int, int]] | None = []
        self._frame: Frame | None = None
        self._last_grab = 0.0
        self._last_whole = 0.0
        # Grabs of the whole screen and of damaged regions only, for benchmarks and tests.
        self.whole_grabs = 0
        self.region_grabs = 0
        self._cursor_changed = True
        self._cursor: CursorImage | None = None

    # --- frames -------------------------------------------------------------------------

    def grab(self, *, force: bool = False) -> Frame | None:
        try:
            self._drain_events()
            if self._size != self._grabbed_size:
                self._reopen()
                force = True
            now = time.monotonic()
            if not (force or self._damaged or now - self._last_grab >= SAFETY_INTERVAL):
                return None
            whole = (force or self._frame is None or self._damage_event is None
                     or now - self._last_whole >= SAFETY_INTERVAL)
            regions = self._take_damage(whole)
            self._last_grab = now
            if regions is None:
                self._last_whole = now
                self._grab_whole()
            else:
                self._grab_regions(regions)
        except CaptureError:
            raise
        except self._xerrors as exc:
            raise self._gone(exc) from None
        return self._frame

    def _take_damage(self, whole: bool) -> list[Region] | None:
        """Clear the server's damage and return the regions to grab (None: the whole screen)."""
        late: list[tuple[int, int, int, int]] | None = []
        if self._damaged and self._damage_event is not None:
            self._x.damage_subtract(self._damage, self._none, self._none)
            # The subtract must reach the server before mss's grab (another connection):
            # what is drawn after it makes new damage and so a new grab; nothing is lost.
            self._x.sync()
            # Reported since the last drain: drawn before the subtract, so grab it now, or
            # after it, so its damage is still the server's and reports nothing more until
            # the next subtract: it stays pending too.
            earlier, self._rectangles, self._damaged = self._rectangles, [], False
            self._drain_events()
            late = self._rectangles
            self._rectangles = None if earlier is None or late is None else earlier + late
        regions = None if whole else self._damaged_regions()
        self._rectangles = late
        # Without XDamage every grab is "damaged": that is polling.
        self._damaged = self._damaged or self._damage_event is None
        return regions

    def _grab_whole(self) -> None:
        self.whole_grabs += 1
        shot = self._mss.grab(self._region)
        width, height = shot.size
        grabbed = np.frombuffer(shot.raw, np.uint8).reshape(height, width, 4)
        # Copied into a frame of our own: keeping mss's buffer (a new one each grab) until
        # the next grab made the allocator give its pages back to the kernel and fault them
        # in again, which cost the sharer more than the copy does (`ra-bench e2e`, full).
        if self._frame is None or self._frame.shape != grabbed.shape:
            self._frame = np.empty_like(grabbed)
        np.copyto(self._frame, grabbed)

    def _grab_regions(self, regions: list[Region]) -> None:
        assert self._frame is not None
        self.region_grabs += 1
        for left, top, width, height in regions:
            shot = self._mss.grab({"left": self._region["left"] + left,
                                   "top": self._region["top"] + top,
                                   "width": width, "height": height})
            self._frame[top:top + height, left:left + width] = np.frombuffer(
                shot.raw, np.uint8).reshape(height, width, 4)

    def _damaged_regions(self) -> list[Region] | None:
        """The damage inside the frame as few regions, nearby rectangles merged; None when
        grabbing the whole screen is cheaper (or the damage was not tracked)."""
        if self._rectangles is None:
            return None
        assert self._frame is not None
        height, width = self._frame.shape[:2]
        left, top = self._region["left"], self._region["top"]
        clipped = [[max(0, x0 - left), max(0, y0 - top), min(width, x1 - left),
                    min(height, y1 - top)] for x0, y0, x1, y1 in self._rectangles]
        rectangles = [r for r in clipped if r[0] < r[2] and r[1] < r[3]]  # on this monitor
        boxes: list[list[int]] = []
        for box in rectangles:
            # Swallow every box near this one, until none is: a merged box may reach more.
            while near := [b for b in boxes if _near(b, box)]:
                for b in near:
                    boxes.remove(b)
                box = _bounding([box, *near])
            boxes.append(box)
            if len(boxes) > MAX_REGIONS:
                # Scattered damage: one region around all of it, without merging the rest.
                boxes = [_bounding(rectangles)]
                break
        if sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes) > WHOLE_GRAB_SHARE * width * height:
            return None
        return [(b[0], b[1], b[2] - b[0], b[3] - b[1]) for b in boxes]

    def pending(self) -> bool:
        try:
            self._drain_events()
        except self._xerrors as exc:
            raise self._gone(exc) from None
        # Without XDamage every grab is "damaged": that is polling, not news.
        damaged = self._damaged and self._damage_event is not None
        return damaged or self._size != self._grabbed_size or self._cursor_changed

    def fileno(self) -> int | None:
        return int(self._x.fileno())

    def _drain_events(self) -> None:
        """Note what the server reported since the last tick (no round trip)."""
        while self._x.pending_events():
            event = self._x.next_event()
            if event.type == self._damage_event:
                self._damaged = True
                area = event.area
                if self._rectangles is not None:
                    self._rectangles.append((int(area.x), int(area.y), int(area.x + area.width),
                                             int(area.y + area.height)))
                    if len(self._rectangles) > MAX_RECTANGLES:
                        self._rectangles = None
            elif event.type == self._cursor_event:
                self._cursor_changed = True
            elif event.type == self._configure_event and event.window == self._root:
                self._size = (int(event.width), int(event.height))

    def _reopen(self) -> None:
        """(Re)connect mss: it reads the monitor list once per connection."""
        if self._mss is not None:
            self._mss.close()
        self._mss = self._mss_class(display=self.display_name)
        monitors = self._mss.monitors
        if not 0 <= self.monitor < len(monitors):
            raise CaptureError(f"the display has {len(monitors) - 1} monitor(s); there is no "
                               f"monitor {self.monitor}")
        self._region = dict(monitors[self.monitor])
        self._grabbed_size = self._size
        self._frame = None

    def _gone(self, exc: BaseException) -> CaptureError:
        return CaptureError(f"the display {self.display_name or '$DISPLAY'} cannot be "
                            f"captured any more ({exc or type(exc).__name__})")

    # --- cursor -------------------------------------------------------------------------

    def cursor(self) -> CursorImage | None:
        try:
            self._drain_events()
            if self._cursor_changed and self._cursor_event is not None:
                image = self._x.xfixes_get_cursor_image(self._root)
                self._cursor_changed = False
                # CARD32 ARGB per pixel; little-endian bytes are B, G, R, A.
                self._cursor = CursorImage(
                    x=0, y=0, hot_x=int(image.xhot), hot_y=int(image.yhot),
                    width=int(image.width), height=int(image.height),
                    serial=int(image.cursor_serial),
                    pixels=np.asarray(image.cursor_image, "<u4").tobytes())
            if self._cursor is None:
                return None
            pointer = self._root.query_pointer()
        except self._xerrors as exc:
            raise self._gone(exc) from None
        return dataclasses.replace(self._cursor, x=int(pointer.root_x) - self._region["left"],
                                   y=int(pointer.root_y) - self._region["top"])

    def close(self) -> None:
        if self._mss is not None:
            self._mss.close()
            self._mss = None
        with contextlib.suppress(*self._xerrors):
            self._x.close()
