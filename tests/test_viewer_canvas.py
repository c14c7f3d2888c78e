"""The canvas: pixels of a known framebuffer on screen, scaling, and input only while in control."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, QPointF, Qt
from PyQt6.QtGui import QAction, QImage, QKeySequence, QWheelEvent
from PyQt6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from viewer_support import STEP  # noqa: F401  (sets the offscreen platform first)

from engine.protocol import Buttons, Cursor
from viewer.canvas import Canvas, CanvasView
from viewer.keys import keysym_for_key


def bgrx(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A framebuffer filled with (r, g, b)."""
    array = np.empty((height, width, 4), np.uint8)
    r, g, b = colour
    array[...] = (b, g, r, 0xFF)
    return array


def pixel(image: QImage, x: int, y: int) -> tuple[int, int, int]:
    colour = image.pixelColor(x, y)
    return colour.red(), colour.green(), colour.blue()


def colours(image: QImage, *points: tuple[int, int]) -> list[tuple[int, int, int]]:
    return [pixel(image, x, y) for x, y in points]


def shown(qtbot: QtBot, view: CanvasView, width: int, height: int) -> Canvas:
    view.resize(width, height)
    view.show()
    qtbot.waitExposed(view)
    return view.canvas


@pytest.fixture
def view(qtbot: QtBot) -> CanvasView:
    widget = CanvasView()
    widget.setFrameShape(CanvasView.Shape.NoFrame)
    qtbot.addWidget(widget)
    return widget


def test_one_to_one_paints_each_pixel_in_place(qtbot: QtBot, view: CanvasView) -> None:
    canvas = shown(qtbot, view, 300, 200)
    frame = bgrx(100, 160, (0, 0, 255))
    frame[10:20, 30:50] = (0, 0xFF, 0, 0xFF)  # green block, BGRX
    frame[50, 100] = (0x10, 0x20, 0x30, 0xFF)  # one pixel of r=0x30 g=0x20 b=0x10
    canvas.set_fit(False)
    canvas.set_framebuffer(frame)
    grab = canvas.grab().toImage()
    assert grab.width() == 160 and grab.height() == 100
    assert colours(grab, (0, 0), (30, 10), (49, 19), (50, 19), (100, 50)) == [
        (0, 0, 255), (0, 255, 0), (0, 255, 0), (0, 0, 255), (0x30, 0x20, 0x10)]


def test_changes_in_place_show_after_changed(qtbot: QtBot, view: CanvasView) -> None:
    canvas = shown(qtbot, view, 300, 200)
    frame = bgrx(100, 160, (255, 255, 255))
    canvas.set_fit(False)
    canvas.set_framebuffer(frame)
    assert pixel(canvas.grab().toImage(), 70, 40) == (255, 255, 255)
    # The decoder writes into the same array; the QImage is a view over it, not a copy.
    frame[40:60, 70:90] = (0, 0, 0xFF, 0xFF)
    canvas.changed([(70, 40, 20, 20)])
    assert colours(canvas.grab().toImage(), (70, 40), (89, 59), (90, 60)) == [
        (255, 0, 0), (255, 0, 0), (255, 255, 255)]


def test_fit_scales_and_centres(qtbot: QtBot, view: CanvasView) -> None:
    canvas = shown(qtbot, view, 400, 400)
    frame = bgrx(100, 200, (255, 0, 0))
    frame[:, 100:] = (0xFF, 0, 0, 0xFF)  # right half blue
    canvas.set_framebuffer(frame)
    assert canvas.fit
    assert canvas.scale() == pytest.approx(2.0)
    # 200x100 at scale 2 is 400x200, centred vertically in 400x400: rows 100..299.
    grab = canvas.grab().toImage()
    assert pixel(grab, 10, 110) == (255, 0, 0)
    assert pixel(grab, 390, 290) == (0, 0, 255)
    assert pixel(grab, 10, 50) != (255, 0, 0)  # the margin above is background
    assert canvas.remote_position(canvas.origin()) == (0, 0)
    assert canvas.remote_position(QPoint(399, 299).toPointF()) == (199, 99)
    assert canvas.remote_position(QPoint(201, 151).toPointF()) == (100, 25)


def test_one_to_one_scrolls_when_larger_than_the_window(qtbot: QtBot, view: CanvasView) -> None:
    canvas = shown(qtbot, view, 200, 150)
    canvas.set_framebuffer(bgrx(600, 800, (1, 2, 3)))
    canvas.set_fit(False)
    assert canvas.size().width() == 800 and canvas.size().height() == 600
    assert view.horizontalScrollBar().maximum() > 0
    assert view.verticalScrollBar().maximum() > 0
    canvas.set_fit(True)
    assert canvas.width() <= 200
    assert view.horizontalScrollBar().maximum() == 0


def test_remote_cursor_drawn_at_its_hot_spot(qtbot: QtBot, view: CanvasView) -> None:
    canvas = shown(qtbot, view, 300, 200)
    canvas.set_fit(False)
    canvas.set_framebuffer(bgrx(100, 160, (255, 255, 255)))
    shape = bytes((0, 0, 0xFF, 0xFF)) * (4 * 4)  # 4x4 opaque red, BGRA premultiplied
    canvas.set_cursor(Cursor(x=50, y=40, visible=True, hot_x=1, hot_y=2, width=4, height=4,
                             pixels=shape))
    grab = canvas.grab().toImage()
    assert pixel(grab, 49, 38) == (255, 0, 0)
    assert pixel(grab, 52, 41) == (255, 0, 0)
    assert pixel(grab, 53, 42) == (255, 255, 255)
    # A move without a shape keeps the shape and its hot spot.
    canvas.set_cursor(Cursor(x=10, y=10, visible=True))
    grab = canvas.grab().toImage()
    assert pixel(grab, 49, 38) == (255, 255, 255)
    assert pixel(grab, 9, 8) == (255, 0, 0)
    canvas.set_cursor(Cursor(x=10, y=10, visible=False))
    assert pixel(canvas.grab().toImage(), 9, 8) == (255, 255, 255)


def test_input_is_forwarded_only_in_control(qtbot: QtBot, view: CanvasView) -> None:
    canvas = shown(qtbot, view, 400, 400)
    canvas.set_framebuffer(bgrx(100, 200, (0, 0, 0)))  # fitted at scale 2, rows 100..299
    pointers: list[tuple[int, int, int]] = []
    keys: list[tuple[int, bool]] = []
    canvas.pointer_input.connect(lambda x, y, b: pointers.append((x, y, b)))
    canvas.key_input.connect(lambda k, d: keys.append((k, d)))
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(100, 150))
    qtbot.keyClick(canvas, Qt.Key.Key_A)
    assert pointers == [] and keys == []

    canvas.set_controlling(True)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(100, 150))
    assert pointers == [(50, 25, int(Buttons.LEFT)), (50, 25, int(Buttons.NONE))]
    qtbot.keyClick(canvas, Qt.Key.Key_A)
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    qtbot.keyClick(canvas, Qt.Key.Key_Tab)
    assert keys == [(0x61, True), (0x61, False), (0xFF1B, True), (0xFF1B, False),
                    (0xFF09, True), (0xFF09, False)]

    canvas.set_controlling(False)
    qtbot.mouseClick(canvas, Qt.MouseButton.RightButton, pos=QPoint(10, 110))
    qtbot.keyClick(canvas, Qt.Key.Key_B)
    assert len(pointers) == 2 and len(keys) == 6


def test_wheel_turns_are_clicks_down_positive(qtbot: QtBot, view: CanvasView) -> None:
    canvas = shown(qtbot, view, 200, 100)
    canvas.set_framebuffer(bgrx(100, 200, (0, 0, 0)))
    canvas.set_controlling(True)
    scrolls: list[tuple[int, int]] = []
    canvas.scroll_input.connect(lambda dx, dy: scrolls.append((dx, dy)))

    def turn(degrees_eighths: int) -> None:
        event = QWheelEvent(QPointF(50, 50), QPointF(canvas.mapToGlobal(QPoint(50, 50))),
                            QPoint(), QPoint(0, degrees_eighths), Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(canvas, event)

    turn(-120)  # towards the user: down
    turn(60)
    turn(60)  # two halves make one click up
    assert scrolls == [(0, 1), (0, -1)]


def test_keysyms_without_a_native_key() -> None:
    assert keysym_for_key(Qt.Key.Key_Return, "\r") == 0xFF0D
    assert keysym_for_key(Qt.Key.Key_F5, "") == 0xFFC2
    assert keysym_for_key(Qt.Key.Key_A, "A") == 0x41
    assert keysym_for_key(Qt.Key.Key_A, "") == 0x61  # Ctrl+A: no text, the unshifted key
    assert keysym_for_key(Qt.Key.Key_Eacute, "é") == 0xE9
    assert keysym_for_key(0x20AC, "€") == 0x010020AC
    assert keysym_for_key(Qt.Key.Key_unknown, "") == 0


HIDPI_SCRIPT = """
import numpy as np
from PyQt6.QtCore import QPointF
from PyQt6.QtWidgets import QApplication
from viewer.canvas import CanvasView

app = QApplication([])
view = CanvasView()
view.resize(400, 300)
view.show()
frame = np.zeros((100, 200, 4), np.uint8)
frame[..., 3] = 0xFF
frame[:, 1::2, 2] = 0xFF  # odd columns red: any resampling would blend them
canvas = view.canvas
canvas.set_fit(False)
canvas.set_framebuffer(frame)
app.processEvents()
image = canvas.grab().toImage()
red = [image.pixelColor(x, 10).red() for x in range(6)]
print(canvas.devicePixelRatioF(), canvas.width(), canvas.height(), image.width(),
      image.height(), red, canvas.remote_position(QPointF(50.5, 25.0)), sep="|")
"""


def test_one_to_one_is_one_remote_pixel_per_device_pixel_on_hidpi() -> None:
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": "2"}
    result = subprocess.run([sys.executable, "-c", HIDPI_SCRIPT], env=environment,
                            capture_output=True, text=True, timeout=60, check=True)
    ratio, width, height, device_w, device_h, red, position = result.stdout.strip().split("|")
    assert float(ratio) == 2.0
    # Half as many logical pixels; every device pixel is one remote pixel, unblended.
    assert (int(width), int(height), int(device_w), int(device_h)) == (100, 50, 200, 100)
    assert red == "[0, 255, 0, 255, 0, 255]"
    assert position == "(101, 50)"


def test_while_driving_shortcuts_are_keys_for_the_novice(qtbot: QtBot,
                                                         view: CanvasView) -> None:
    canvas = shown(qtbot, view, 200, 100)
    canvas.set_framebuffer(bgrx(100, 200, (0, 0, 0)))
    action = QAction("Open", view)
    action.setShortcut(QKeySequence("Ctrl+O"))
    action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    view.addAction(action)
    triggered: list[bool] = []
    action.triggered.connect(lambda: triggered.append(True))
    keys: list[tuple[int, bool]] = []
    canvas.key_input.connect(lambda k, d: keys.append((k, d)))
    canvas.setFocus()
    # Through the window, as the platform delivers keys: that is where shortcuts are matched.
    window = view.windowHandle()
    assert window is not None
    qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert triggered == [True] and keys == []

    canvas.set_controlling(True)
    qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert triggered == [True]
    # Control_L down, o down, o up, Control_L up: the novice's program gets its Ctrl+O.
    assert keys == [(0xFFE3, True), (0x6F, True), (0x6F, False), (0xFFE3, False)]
