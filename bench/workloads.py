"""Deterministic desktop workloads for the codec benchmark.

Every workload starts from the same synthetic desktop (wallpaper, windows with title bars,
buttons, antialiased text, a photo) drawn with a fixed seed, and yields BGRX frames as mss
would: `uint8` arrays (H, W, 4). Frames are made before they are timed; the generator may
reuse one array, as the encoder copies what it needs into its reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

Frame = npt.NDArray[np.uint8]

RESOLUTIONS = {"1080p": (1920, 1080), "4k": (3840, 2160)}
WORDS = (
    "the quick brown fox jumps over lazy dog remote assistance session expert novice "
    "control desktop window settings printer network driver update install open file "
    "cancel apply restart error message click button menu folder document print share "
    "def return import class self value None True False for while if else print(x)"
).split()
LINE_HEIGHT = 18
TEXT_COLOUR = (30, 30, 30)
PAPER = (250, 250, 250)
SCROLL_STEP = 18  # one text line a frame
DRAG_STEP = 8
DRAG_RISE = 3
VIDEO_SIZE = (640, 360)


@dataclass(frozen=True)
class Window:
    x: int
    y: int
    width: int
    height: int
    title: str

    @property
    def body(self) -> tuple[int, int, int, int]:
        """The content area: below the 28-pixel title bar, inside a 1-pixel border."""
        return self.x + 1, self.y + 28, self.width - 2, self.height - 29


def _font(size: int = 14) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _rgb_to_bgrx(rgb: npt.NDArray[np.uint8]) -> Frame:
    height, width = rgb.shape[:2]
    frame = np.empty((height, width, 4), np.uint8)
    frame[..., 0] = rgb[..., 2]
    frame[..., 1] = rgb[..., 1]
    frame[..., 2] = rgb[..., 0]
    frame[..., 3] = 0xFF
    return frame


def photo(width: int, height: int, seed: int) -> npt.NDArray[np.uint8]:
    """Natural-looking RGB content: smooth fractal noise with a colour ramp and grain."""
    rng = np.random.default_rng(seed)
    channels = []
    for _ in range(3):
        layer = np.zeros((height, width), np.float32)
        for octave in range(1, 7):
            cells = 2 ** octave
            grid = rng.random((max(2, height * cells // width), cells), dtype=np.float32)
            small = Image.fromarray((grid * 255).astype(np.uint8))
            smooth = small.resize((width, height), Image.Resampling.BICUBIC)
            layer += np.asarray(smooth, np.float32) / (1.6 ** octave)
        channels.append(layer)
    rgb = np.stack(channels, axis=-1)
    rgb -= rgb.min()
    rgb *= 230 / rgb.max()
    rgb += rng.normal(0, 3, rgb.shape).astype(np.float32)  # sensor grain
    return np.clip(rgb, 0, 255).astype(np.uint8)


def text_lines(count: int, seed: int, columns: int = 110) -> list[str]:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        words: list[str] = []
        length = int(rng.integers(columns // 3, columns))
        while sum(len(w) + 1 for w in words) < length:
            words.append(WORDS[int(rng.integers(len(WORDS)))])
        indent = " " * int(rng.choice([0, 0, 4, 8]))
        lines.append(indent + " ".join(words))
    return lines


def render_text(width: int, lines: list[str]) -> npt.NDArray[np.uint8]:
    """Lines of antialiased text on paper, as RGB."""
    image = Image.new("RGB", (width, LINE_HEIGHT * len(lines) + 4), PAPER)
    draw = ImageDraw.Draw(image)
    font = _font()
    for n, line in enumerate(lines):
        draw.text((6, 2 + LINE_HEIGHT * n), line, fill=TEXT_COLOUR, font=font)
    return np.asarray(image)


class Desktop:
    """The synthetic desktop every workload starts from."""

    def __init__(self, width: int, height: int, seed: int = 1):
        self.width, self.height = width, height
        scale_x, scale_y = width / 1920, height / 1080
        self.editor = Window(int(60 * scale_x), int(50 * scale_y), int(1000 * scale_x),
                             int(700 * scale_y), "notes.txt - Editor")
        self.viewer = Window(int(1100 * scale_x), int(80 * scale_y), int(740 * scale_x),
                             int(470 * scale_y), "Photos")
        self.dialog = Window(int(1150 * scale_x), int(600 * scale_y), int(460 * scale_x),
                             int(300 * scale_y), "Printer settings")
        self.video_origin = (self.viewer.body[0] + 20, self.viewer.body[1] + 20)

        wallpaper = np.empty((height, width, 3), np.float32)
        ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None]
        for channel, (top, bottom) in enumerate(((30, 90), (60, 140), (110, 200))):
            wallpaper[..., channel] = top + (bottom - top) * ramp
        image = Image.fromarray(wallpaper.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for window in (self.editor, self.viewer, self.dialog):
            self._draw_window(draw, window)
        self._draw_taskbar(draw)
        rgb = np.array(image)
        bx, by, bw, bh = self.editor.body
        rgb[by:by + bh, bx:bx + bw] = render_text(bw, text_lines(bh // LINE_HEIGHT + 1, seed))[:bh]
        vx, vy, vw, vh = self.viewer.body
        rgb[vy:vy + vh, vx:vx + vw] = photo(vw, vh, seed + 1)
        self.rgb = rgb
        self.frame = _rgb_to_bgrx(rgb)

    def _draw_window(self, draw: ImageDraw.ImageDraw, window: Window) -> None:
        x, y, w, h = window.x, window.y, window.width, window.height
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=(236, 236, 236), outline=(90, 90, 90))
        for row in range(27):  # title bar gradient
            shade = 70 + row * 2
            draw.line((x + 1, y + 1 + row, x + w - 2, y + 1 + row), fill=(shade, shade + 40, 200))
        draw.text((x + 10, y + 6), window.title, fill=(255, 255, 255), font=_font(15))
        for n, colour in enumerate(((230, 80, 70), (240, 190, 60), (90, 190, 90))):
            cx = x + w - 20 - 22 * n
            draw.ellipse((cx - 7, y + 7, cx + 7, y + 21), fill=colour)
        if window.title.startswith("Printer"):
            bx, by, bw, bh = window.body
            font = _font()
            for n, label in enumerate(("Paper size: A4", "Orientation: Portrait",
                                       "Copies: 1", "Colour: Automatic")):
                draw.text((bx + 20, by + 20 + 30 * n), label, fill=TEXT_COLOUR, font=font)
            for n, label in enumerate(("OK", "Cancel", "Apply")):
                left = bx + bw - 3 * 100 + 100 * n
                draw.rounded_rectangle((left, by + bh - 45, left + 88, by + bh - 15), radius=5,
                                       fill=(225, 225, 230), outline=(120, 120, 140))
                draw.text((left + 20, by + bh - 38), label, fill=TEXT_COLOUR, font=font)

    def _draw_taskbar(self, draw: ImageDraw.ImageDraw) -> None:
        top = self.height - 40
        draw.rectangle((0, top, self.width, self.height), fill=(32, 36, 44))
        font = _font()
        for n, label in enumerate(("Start", "Editor", "Photos", "Settings", "Terminal")):
            draw.rectangle((8 + 120 * n, top + 6, 120 * n + 118, top + 34), fill=(58, 64, 78))
            draw.text((20 + 120 * n, top + 12), label, fill=(230, 230, 230), font=font)
        draw.text((self.width - 70, top + 12), "14:02", fill=(230, 230, 230), font=font)


WorkloadFn = Callable[[Desktop, int], Iterator[Frame]]


def static(desktop: Desktop, frames: int) -> Iterator[Frame]:
    for _ in range(frames):
        yield desktop.frame


def typing(desktop: Desktop, frames: int) -> Iterator[Frame]:
    """Two characters a frame appear in the editor, followed by a text cursor."""
    frame = desktop.frame.copy()
    bx, by, bw, bh = desktop.editor.body
    line_y = by + bh - 2 * LINE_HEIGHT
    frame[line_y - 2:line_y + LINE_HEIGHT + 2, bx:bx + bw, :3] = PAPER[::-1]
    typed = _rgb_to_bgrx(render_text(bw, text_lines(1 + frames // 50, seed=7)))
    per_frame = 2 * 8  # two glyphs of the 8-pixel-wide default font
    x = 6
    row = 0
    for _ in range(frames):
        if x + per_frame > bw - 8:
            x, row = 6, row + 1
            frame[line_y:line_y + LINE_HEIGHT, bx:bx + bw] = (*PAPER[::-1], 255)
        source = typed[row * LINE_HEIGHT:(row + 1) * LINE_HEIGHT, x:x + per_frame]
        # The cursor moves: erase it where it was, draw the glyphs, draw it after them.
        frame[line_y:line_y + LINE_HEIGHT, bx + x:bx + x + per_frame + 2] = (*PAPER[::-1], 255)
        frame[line_y:line_y + source.shape[0], bx + x:bx + x + per_frame] = source
        x += per_frame
        frame[line_y + 2:line_y + LINE_HEIGHT - 1, bx + x:bx + x + 2, :3] = TEXT_COLOUR[::-1]
        yield frame


def scroll(desktop: Desktop, frames: int) -> Iterator[Frame]:
    """The editor's text scrolls up by one line (18 px) a frame."""
    frame = desktop.frame.copy()
    bx, by, bw, bh = desktop.editor.body
    tall = _rgb_to_bgrx(render_text(bw, text_lines(bh // LINE_HEIGHT + frames + 1, seed=1)))
    for n in range(frames):
        frame[by:by + bh, bx:bx + bw] = tall[n * SCROLL_STEP:n * SCROLL_STEP + bh]
        yield frame


def scroll_clock(desktop: Desktop, frames: int) -> Iterator[Frame]:
    """The editor scrolls as in `scroll` while a counter ticks in the top-left corner, over
    a photo wallpaper. The counter shares a tile row with the editor, so the box of every
    change takes in wallpaper that did not move; on Xvfb, with an xterm, this hid the scroll
    from the motion search (100 KB a frame instead of 3 KB)."""
    editor = desktop.editor
    left, top = editor.x, editor.y
    wallpaper = _rgb_to_bgrx(photo(left + editor.width, top + editor.height, seed=19))
    counter = Image.new("RGB", (192, 16), (32, 36, 44))
    for n, frame in enumerate(scroll(desktop, frames)):
        frame[:top, :left + editor.width] = wallpaper[:top]
        frame[top:top + editor.height, :left] = wallpaper[top:, :left]
        counter.paste((32, 36, 44), (0, 0, *counter.size))
        ImageDraw.Draw(counter).text((4, 1), f"{n:06d} frames", fill=(230, 230, 230),
                                     font=_font(13))
        frame[:16, :192] = _rgb_to_bgrx(np.asarray(counter))
        yield frame


def drag(desktop: Desktop, frames: int) -> Iterator[Frame]:
    """The printer dialog is dragged left by 8 px a frame over the desktop."""
    return _dragged(desktop, frames, 0)


def drag_diagonal(desktop: Desktop, frames: int) -> Iterator[Frame]:
    """The printer dialog is dragged as a hand drags it: 8 px left and 3 px up a frame."""
    return _dragged(desktop, frames, DRAG_RISE)


def _dragged(desktop: Desktop, frames: int, rise: int) -> Iterator[Frame]:
    """The dialog moves DRAG_STEP px left and `rise` px up a frame over the wallpaper; at
    the screen's edge it starts again where it was."""
    window = desktop.dialog
    sprite = desktop.frame[window.y:window.y + window.height,
                           window.x:window.x + window.width].copy()
    # What lies under the dialog: the wallpaper.
    backdrop = desktop.frame.copy()
    backdrop[window.y:window.y + window.height, window.x:window.x + window.width] = (
        _uncovered(desktop, window))
    frame = backdrop.copy()
    x, y = window.x, window.y
    for _ in range(frames):
        frame[y:y + window.height, x:x + window.width] = (
            backdrop[y:y + window.height, x:x + window.width])
        x, y = (x - DRAG_STEP, y - rise) if x >= DRAG_STEP and y >= rise else (window.x, window.y)
        frame[y:y + window.height, x:x + window.width] = sprite
        yield frame


def _uncovered(desktop: Desktop, window: Window) -> Frame:
    """The wallpaper gradient that the dialog hides."""
    ramp = np.linspace(0, 1, desktop.height, dtype=np.float32)[window.y:window.y + window.height]
    patch = np.empty((window.height, window.width, 4), np.uint8)
    for channel, (top, bottom) in enumerate(((110, 200), (60, 140), (30, 90))):  # B, G, R
        patch[..., channel] = (top + (bottom - top) * ramp).astype(np.uint8)[:, None]
    patch[..., 3] = 0xFF
    return patch


def video(desktop: Desktop, frames: int) -> Iterator[Frame]:
    """A 640x360 clip plays in the photo window: a slow pan with changing light."""
    frame = desktop.frame.copy()
    vw, vh = VIDEO_SIZE
    scene = _rgb_to_bgrx(photo(vw + 2 * frames + 8, vh + frames + 8, seed=11))
    x0, y0 = desktop.video_origin
    for n in range(frames):
        clip = scene[n // 2:n // 2 + vh, 2 * n:2 * n + vw]
        frame[y0:y0 + vh, x0:x0 + vw, :3] = np.clip(
            clip[..., :3].astype(np.int16) + (n % 7) - 3, 0, 255).astype(np.uint8)
        yield frame


def full(desktop: Desktop, frames: int) -> Iterator[Frame]:
    """Every pixel changes: a full-screen picture pans while its light changes."""
    width, height = desktop.width, desktop.height
    scene = _rgb_to_bgrx(photo(width + 3 * frames + 8, height + 8, seed=13))
    frame = np.empty((height, width, 4), np.uint8)
    frame[..., 3] = 0xFF
    for n in range(frames):
        view = scene[4:4 + height, 3 * n:3 * n + width, :3]
        np.add(view, np.uint8(n % 2 + 1), out=frame[..., :3])
        yield frame


WORKLOADS: dict[str, WorkloadFn] = {
    "static": static,
    "typing": typing,
    "scroll": scroll,
    "scroll-clock": scroll_clock,
    "drag": drag,
    "drag-diagonal": drag_diagonal,
    "video": video,
    "full": full,
}
