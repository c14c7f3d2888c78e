"""The programs that draw the end-to-end workloads on a real X display.

    python -m bench.animator desktop                  wallpaper on the root window, then exit
    python -m bench.animator draw WORKLOAD --times T  the counter (and WORKLOAD) at --rate Hz
                                                      until SIGTERM; T gets the draw times
    python -m bench.animator feed                     lines of text on stdout at --rate Hz
                                                      (run inside xterm: the scroll workload)

Every tick `draw` puts a frame counter in the top-left corner of the screen, so a client can
tell which screen state it holds: `COUNTER_BITS` blocks for the number and as many for its
complement below them, black or white, `BLOCK` pixels square. The complement makes a torn or
half-covered counter read as no number at all rather than a wrong one. The counter is one
PutImage request, which the X server carries out whole, and a capture (one GetImage) sees
either all of it or none; it is drawn after the workload's own drawing in the same tick, then
`XSync`, and only then is the tick's time taken (CLOCK_MONOTONIC, shared by the processes of
one machine), so a client that decodes that number later measures draw → decoded.

Drawing a whole 1080p screen 60 times a second from Python works only on the server's side:
the frames are uploaded once as pixmaps and each tick is one CopyArea (python-xlib has no
MIT-SHM, and a PutImage of 8 MB a tick would take longer than the tick).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.workloads import DRAG_STEP, VIDEO_SIZE, photo, text_lines

__all__ = ["BLOCK", "COUNTER_BITS", "COUNTER_ORIGIN", "DRAWN", "counter_image", "read_counter"]

COUNTER_BITS = 24
BLOCK = 8
COUNTER_ORIGIN = (0, 0)
COUNTER_SIZE = (COUNTER_BITS * BLOCK, 2 * BLOCK)
DRAWN = ("idle", "typing", "scroll", "drag", "video", "full")
DRAG_WINDOW = (480, 320)
# Distinct full-screen frames kept in the X server: 8 MB each at 1080p, 33 MB at 4k.
FULL_FRAMES = 6
VIDEO_FRAMES = 30
# The largest PutImage python-xlib can send without BIG-REQUESTS is 256 kB: upload in strips.
MAX_REQUEST = 200_000

Pixels = npt.NDArray[np.uint8]


def counter_image(n: int) -> Pixels:
    """The counter for `n` as BGRX pixels (2·BLOCK rows of COUNTER_BITS blocks)."""
    bits = (n >> np.arange(COUNTER_BITS)) & 1
    rows = np.stack([bits, 1 - bits]).astype(np.uint8) * 255
    blocks = np.repeat(np.repeat(rows, BLOCK, axis=0), BLOCK, axis=1)
    image = np.empty((*blocks.shape, 4), np.uint8)
    image[..., :3] = blocks[..., None]
    image[..., 3] = 0xFF
    return image


def read_counter(frame: Pixels) -> int | None:
    """The counter shown in a BGRX frame, or None when there is none (or a torn one)."""
    x0, y0 = COUNTER_ORIGIN
    centres = x0 + BLOCK // 2 + BLOCK * np.arange(COUNTER_BITS)
    if frame.shape[0] < y0 + 2 * BLOCK or frame.shape[1] < x0 + COUNTER_SIZE[0]:
        return None
    samples = frame[[y0 + BLOCK // 2, y0 + BLOCK + BLOCK // 2]][:, centres, :3]
    white = samples == 255
    if not np.all(white | (samples == 0)) or not np.all(white.all(-1) | ~white.any(-1)):
        return None
    bits, complement = white[..., 0]
    if not np.array_equal(bits, ~complement):
        return None
    return int(np.dot(bits.astype(np.int64), 1 << np.arange(COUNTER_BITS, dtype=np.int64)))


def bgrx(rgb: npt.NDArray[np.uint8]) -> Pixels:
    frame = np.empty((*rgb.shape[:2], 4), np.uint8)
    frame[..., :3] = rgb[..., ::-1]
    frame[..., 3] = 0xFF
    return frame


class Screen:
    """The display and what the animator keeps on it (python-xlib, one connection)."""

    def __init__(self) -> None:
        from Xlib import X
        from Xlib import display as xdisplay

        self.X = X
        self.display = xdisplay.Display()
        screen = self.display.screen()
        self.root = screen.root
        self.depth = screen.root_depth
        geometry = self.root.get_geometry()
        self.width, self.height = int(geometry.width), int(geometry.height)
        self.gc = self.root.create_gc(graphics_exposures=False)

    def pixmap(self, pixels: Pixels) -> Any:
        """A server-side copy of BGRX `pixels` (ZPixmap, 32 bits a pixel at depth 24)."""
        height, width = pixels.shape[:2]
        pixmap = self.root.create_pixmap(width, height, self.depth)
        rows = max(1, MAX_REQUEST // (4 * width))
        for top in range(0, height, rows):
            strip = np.ascontiguousarray(pixels[top:top + rows])
            pixmap.put_image(self.gc, 0, top, width, strip.shape[0], self.X.ZPixmap,
                             self.depth, 0, strip.tobytes())
            # python-xlib grows its send buffer by concatenation: flushing each strip keeps
            # an upload linear (27 MB queued at once took 4 s, flushed per strip well under 1).
            self.display.flush()
        return pixmap

    def window(self, x: int, y: int, width: int, height: int, background: Any = None) -> Any:
        """A mapped window no window manager moves (there is none on the bench's Xvfb)."""
        attributes: dict[str, Any] = {"override_redirect": True}
        if background is None:
            attributes["background_pixel"] = 0
        else:
            # The server repaints the window from its background: no Expose to handle.
            attributes["background_pixmap"] = background
        window = self.root.create_window(x, y, width, height, 0, self.depth,
                                         self.X.InputOutput, self.X.CopyFromParent,
                                         **attributes)
        window.map()
        return window


def _cached(cache: Path | None, name: str, make: Callable[[], Pixels]) -> Pixels:
    """`make()`, kept in `cache` between runs: natural-looking frames take seconds to make."""
    if cache is None:
        return make()
    path = cache / f"{name}.npy"
    if path.exists():
        loaded: Pixels = np.load(path)
        return loaded
    pixels = make()
    np.save(path, pixels)
    return pixels


def _crops(source: Pixels, size: tuple[int, int], count: int, seed: int,
           grain: float) -> Iterator[Pixels]:
    """`count` views of `source` panning around a circle, each with fresh sensor grain."""
    width, height = size
    room_x, room_y = source.shape[1] - width, source.shape[0] - height
    rng = np.random.default_rng(seed)
    for k in range(count):
        angle = 2 * np.pi * k / count
        x = int((1 + np.cos(angle)) / 2 * room_x)
        y = int((1 + np.sin(angle)) / 2 * room_y)
        rgb = source[y:y + height, x:x + width].astype(np.int16)
        if grain:
            rgb += rng.normal(0, grain, rgb.shape).astype(np.int16)
        yield bgrx(np.clip(rgb, 0, 255).astype(np.uint8))


def wallpaper(screen: Screen, cache: Path | None) -> None:
    """A photo on the root window: what a drag uncovers is a real desktop's cost."""
    pixels = _cached(cache, f"wallpaper-{screen.width}x{screen.height}",
                     lambda: bgrx(photo(screen.width, screen.height, seed=7)))
    pixmap = screen.pixmap(pixels)
    screen.root.change_attributes(background_pixmap=pixmap)
    screen.root.clear_area(0, 0, 0, 0)
    # The root window holds its own reference: the wallpaper outlives this connection.
    pixmap.free()
    screen.display.sync()


Step = Callable[[int], None]


def _full(screen: Screen, cache: Path | None) -> Step:
    """The whole screen changes every tick: a photo pans, with fresh grain each time, so no
    copy of the last frame explains any of it (a clean pan is a motion the codec finds)."""
    size = (screen.width, screen.height)
    source = _cached(cache, f"full-source-{screen.width}x{screen.height}",
                     lambda: photo(screen.width + 64, screen.height + 64, seed=11))
    pixmaps = [screen.pixmap(frame) for frame in _crops(source, size, FULL_FRAMES, 11, 2)]
    window = screen.window(0, 0, *size)
    return lambda tick: window.copy_area(screen.gc, pixmaps[tick % len(pixmaps)], 0, 0,
                                         *size, 0, 0)


def _video(screen: Screen, cache: Path | None) -> Step:
    width, height = min(VIDEO_SIZE[0], screen.width), min(VIDEO_SIZE[1], screen.height)
    source = _cached(cache, "video-source", lambda: photo(VIDEO_SIZE[0] + 96,
                                                          VIDEO_SIZE[1] + 96, seed=13))
    pixmaps = [screen.pixmap(frame) for frame in
               _crops(source, (width, height), VIDEO_FRAMES, 13, grain=4)]
    window = screen.window((screen.width - width) // 2, (screen.height - height) // 2,
                           width, height)
    return lambda tick: window.copy_area(screen.gc, pixmaps[tick % len(pixmaps)], 0, 0,
                                         width, height, 0, 0)


def _drag(screen: Screen, cache: Path | None) -> Step:
    """A window with a title bar and a photo, moved DRAG_STEP pixels a tick, back and forth."""
    width, height = min(DRAG_WINDOW[0], screen.width // 2), min(DRAG_WINDOW[1],
                                                                 screen.height // 2)
    pixels = bgrx(photo(width, height, seed=17))
    pixels[:24, :, :3] = (120, 70, 40)  # the title bar
    window = screen.window(0, 0, width, height, background=screen.pixmap(pixels))
    top = 3 * BLOCK
    span_x = screen.width - width
    span_y = max(0, screen.height - height - top)

    def step(tick: int) -> None:
        travel = (tick * DRAG_STEP) % (2 * span_x)
        x = travel if travel < span_x else 2 * span_x - travel
        y = top + int(span_y * (0.5 + 0.4 * np.sin(tick / 40)))
        window.configure(x=x, y=y)

    return step


def _nothing(screen: Screen, cache: Path | None) -> Step:
    """Only the counter moves (the load, if any, is another program: xterm, xdotool)."""
    return lambda tick: None


STEPS: dict[str, Callable[[Screen, Path | None], Step]] = {
    "idle": _nothing, "typing": _nothing, "scroll": _nothing,
    "drag": _drag, "video": _video, "full": _full,
}


def draw(workload: str, start: int, rate: float, times_path: Path, cache: Path | None) -> None:
    """Tick at `rate` Hz until SIGTERM; write the time each counter value was drawn."""
    screen = Screen()
    step = STEPS[workload](screen, cache)
    # Mapped last, so it stays above everything this workload shows.
    counter = screen.window(*COUNTER_ORIGIN, *COUNTER_SIZE)
    screen.display.sync()
    stop = False

    def stopping(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, stopping)
    period = 1.0 / rate
    times: list[float] = []
    print("ready", flush=True)
    due = time.monotonic()
    while not stop:
        tick = len(times)
        step(tick)
        image = counter_image(start + tick)
        counter.put_image(screen.gc, 0, 0, COUNTER_SIZE[0], COUNTER_SIZE[1], screen.X.ZPixmap,
                          screen.depth, 0, image.tobytes())
        screen.display.sync()
        times.append(time.monotonic())
        # A late tick is drawn at once and the schedule moves on: no burst to catch up.
        due = max(due + period, times[-1])
        time.sleep(max(0.0, due - time.monotonic()))
    np.save(times_path, np.asarray(times, np.float64))


def feed(rate: float) -> None:
    """Lines of text at `rate` a second, for ever: a terminal scrolling a long text."""
    lines = text_lines(2000, seed=5, columns=150)
    due = time.monotonic()
    for n in range(sys.maxsize):
        sys.stdout.write(lines[n % len(lines)] + "\n")
        sys.stdout.flush()
        due += 1.0 / rate
        time.sleep(max(0.0, due - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.animator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=60.0, help="ticks a second (60)")
    parser.add_argument("--cache", type=Path, help="keep generated images in this directory")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("desktop", help="put the wallpaper on the root window")
    drawing = commands.add_parser("draw", help="draw the counter and a workload")
    drawing.add_argument("workload", choices=DRAWN)
    drawing.add_argument("--start", type=int, default=0, help="the first counter value")
    drawing.add_argument("--times", type=Path, required=True, metavar="PATH.npy",
                         help="where the draw times go on SIGTERM")
    commands.add_parser("feed", help="print text lines at --rate a second")
    args = parser.parse_args(argv)
    if args.command == "desktop":
        wallpaper(Screen(), args.cache)
    elif args.command == "draw":
        draw(args.workload, args.start, args.rate, args.times, args.cache)
    else:
        try:
            feed(args.rate)
        except (BrokenPipeError, KeyboardInterrupt):
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
