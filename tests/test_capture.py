"""Screen capture on a real Xvfb: what `ScreenSource` grabs is what the display shows."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import mss
import numpy as np
import pytest
from Xlib import display as xdisplay

from engine.capture import ScreenSource


def shown(display: str) -> np.ndarray:
    """The display now, from an independent whole grab (B, G, R)."""
    with mss.MSS(display=display) as grabber:
        shot = grabber.grab(grabber.monitors[0])
        return np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4)[..., :3]


def next_frame(source: ScreenSource) -> np.ndarray:
    """The next grab that has something: the damage reaches the source's own connection a
    moment after the drawing connection's sync."""
    deadline = time.monotonic() + 5
    while (frame := source.grab()) is None:
        assert time.monotonic() < deadline, "no damage reported for what was drawn"
        time.sleep(0.005)
    return frame


@pytest.fixture
def painter(xvfb) -> Iterator[tuple[xdisplay.Display, object, object]]:
    """A window covering the screen to draw in, and a graphics context."""
    x = xdisplay.Display(xvfb.display)
    screen = x.screen()
    window = screen.root.create_window(0, 0, 1024, 768, 0, screen.root_depth,
                                       background_pixel=screen.black_pixel)
    window.map()
    x.sync()
    yield x, window, window.create_gc(foreground=screen.white_pixel)
    x.close()


def test_grabs_follow_the_damage_wherever_it_is(xvfb, painter):
    """Small scattered rectangles, rectangles close enough to merge, a copy that moves part of
    the screen (a scroll), and most of the screen at once: after every grab the frame is
    exactly the display, and while the damage is small only the damaged regions are grabbed."""
    x, window, gc = painter
    rng = np.random.default_rng(8)
    source = ScreenSource(xvfb.display)
    try:
        source.grab()
        for step in range(60):
            kind = step % 4
            if kind == 0:  # a few small rectangles anywhere
                for _ in range(int(rng.integers(1, 8))):
                    gc.change(foreground=int(rng.integers(0, 2**24)))
                    window.fill_rectangle(gc, int(rng.integers(0, 1000)),
                                          int(rng.integers(0, 740)),
                                          int(rng.integers(1, 30)), int(rng.integers(1, 30)))
            elif kind == 1:  # a row of glyph-sized cells, as typing draws
                gc.change(foreground=int(rng.integers(0, 2**24)))
                y = int(rng.integers(0, 750))
                for column in range(int(rng.integers(1, 20))):
                    window.fill_rectangle(gc, 40 + 7 * column, y, 6, 13)
            elif kind == 2:  # a scroll: part of the screen moves up, a line appears
                window.copy_area(gc, window, 100, 120, 600, 400, 100, 100)
                window.fill_rectangle(gc, 100, 500, 600, 20)
            else:  # most of the screen, pixels too far apart to merge, or one pixel
                gc.change(foreground=int(rng.integers(0, 2**24)))
                if step % 12 == 3:
                    window.fill_rectangle(gc, 0, 0, 1024, 700)
                elif step % 12 == 7:
                    x0, y0 = int(rng.integers(0, 700)), int(rng.integers(0, 500))
                    for n in range(30):
                        window.fill_rectangle(gc, x0 + 40 * (n % 6), y0 + 40 * (n // 6), 1, 1)
                else:
                    window.fill_rectangle(gc, int(rng.integers(0, 1024)),
                                          int(rng.integers(0, 768)), 1, 1)
            x.sync()
            frame = next_frame(source)
            assert np.array_equal(frame[..., :3], shown(xvfb.display)), f"step {step}"
        assert source.region_grabs >= 30 and source.whole_grabs < 15
        assert source.grab() is None  # nothing drawn since
    finally:
        source.close()


def test_drawing_that_never_stops_keeps_being_grabbed(xvfb, painter):
    """Damage drawn while a grab subtracts the last is not lost: a pixel that changes as fast
    as the X server takes it is seen anew by grab after grab (a damage report taken but left
    in the server's region would silence XDamage until the next whole grab, a second later)."""
    x, window, gc = painter
    stop = threading.Event()

    def draw() -> None:
        colour = 0
        while not stop.is_set():
            colour = (colour + 1) % 2**24
            gc.change(foreground=colour)
            window.fill_rectangle(gc, 500, 400, 8, 8)
            x.sync()

    drawer = threading.Thread(target=draw)
    source = ScreenSource(xvfb.display)
    try:
        source.grab()
        drawer.start()
        seen = set()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            frame = source.grab()
            if frame is not None:
                seen.add(bytes(frame[400, 500]))
            time.sleep(0.002)
        # A grab every few milliseconds: hundreds of colours, not the one or two whole grabs
        # a second that silenced damage would leave.
        assert len(seen) > 50
    finally:
        stop.set()
        drawer.join(5)
        source.close()
