"""The remote desktop on screen: a QImage over the decoder's framebuffer, and input back.

The decoder updates one numpy array (H, W, 4), BGRX, in place. On a little-endian machine those
bytes read as 0xXXRRGGBB words, which is exactly `QImage.Format.Format_RGB32`, so the QImage is a
view over the array's memory: no copy per frame, and a frame costs only the repaint of the
rectangles it changed.

Coordinates: remote pixels are mapped to widget (logical) pixels by one scale and one offset.
"Fit" scales the whole screen into the window; "1:1" shows one remote pixel per *device* pixel,
so on a HiDPI screen (device pixel ratio 2) the remote screen is half as many logical pixels
wide and still sharp. Input goes the opposite way through the same mapping.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np
from PyQt6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, QSize, QSizeF, Qt, pyqtSignal
from PyQt6.QtGui import (
    QFocusEvent,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QWheelEvent,
)
from PyQt6.QtWidgets import QScrollArea, QSizePolicy, QWidget

from engine.protocol import Buttons, Cursor
from viewer.keys import keysym

__all__ = ["Canvas", "CanvasView", "framebuffer_image"]

# Qt reports wheel turns in eighths of a degree; one click of a common wheel is 15 degrees.
WHEEL_CLICK = 120
BACKGROUND = Qt.GlobalColor.darkGray

_BUTTONS = {
    Qt.MouseButton.LeftButton: Buttons.LEFT,
    Qt.MouseButton.MiddleButton: Buttons.MIDDLE,
    Qt.MouseButton.RightButton: Buttons.RIGHT,
}


def framebuffer_image(array: np.ndarray) -> QImage:
    """A QImage that *shares* `array`'s memory (H, W, 4 BGRX); keep the array alive with it."""
    if sys.byteorder != "little":
        raise RuntimeError("the framebuffer is BGRX, which Qt reads as RGB32 only on "
                           "little-endian machines")
    if array.ndim != 3 or array.shape[2] != 4 or array.dtype != np.uint8:
        raise ValueError(f"a framebuffer is (H, W, 4) uint8, not {array.shape} {array.dtype}")
    if not array.flags.c_contiguous:
        raise ValueError("the framebuffer must be one contiguous block of memory")
    height, width = array.shape[:2]
    # PyQt takes any buffer here (its stubs say bytes); the QImage then borrows that memory.
    return QImage(array.data, width, height, int(array.strides[0]),  # type: ignore[call-overload]
                  QImage.Format.Format_RGB32)


def _buttons(held: Qt.MouseButton) -> Buttons:
    result = Buttons.NONE
    for qt_button, button in _BUTTONS.items():
        if held & qt_button:
            result |= button
    return result


class Canvas(QWidget):
    """Paints the framebuffer and the remote cursor; turns input into remote events.

    Input signals fire only while `controlling` is true, so nothing reaches the novice's
    computer unless the novice granted control.
    """

    pointer_input = pyqtSignal(int, int, int)  # x, y in the novice's screen pixels; Buttons
    key_input = pyqtSignal(int, bool)  # X keysym, pressed
    scroll_input = pyqtSignal(int, int)  # wheel clicks right, down

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._array: np.ndarray | None = None
        self._image: QImage | None = None
        self._fit = True
        self._controlling = False
        self._cursor: Cursor | None = None
        self._cursor_image: QImage | None = None
        self._hot = QPoint()  # the shape's hot spot: sent with the shape only
        self._held_keys: set[int] = set()
        self._wheel = QPoint()

    # -- what is shown --------------------------------------------------------------------

    @property
    def framebuffer(self) -> np.ndarray | None:
        return self._array

    def set_framebuffer(self, array: np.ndarray | None) -> None:
        """Show `array` (a new one after a resize); its later in-place changes show on `changed`."""
        self._array = array
        self._image = None if array is None else framebuffer_image(array)
        self._relayout()
        self.update()

    def changed(self, rects: Iterable[tuple[int, int, int, int]]) -> None:
        """The framebuffer changed inside these (x, y, width, height): repaint just those."""
        for x, y, width, height in rects:
            self.update(self._to_widget(QRectF(x, y, width, height)))

    def set_cursor(self, cursor: Cursor) -> None:
        """The remote pointer moved or changed shape (`pixels` empty: same shape as before)."""
        old = self.cursor_rect()
        if cursor.pixels:
            if len(cursor.pixels) != cursor.width * cursor.height * 4:
                raise ValueError("the cursor shape does not match its size")
            # XFixes cursor images are premultiplied ARGB words, BGRA bytes on little-endian.
            self._cursor_image = QImage(cursor.pixels, cursor.width, cursor.height,
                                        cursor.width * 4,
                                        QImage.Format.Format_ARGB32_Premultiplied).copy()
            self._hot = QPoint(cursor.hot_x, cursor.hot_y)
        self._cursor = cursor
        for rect in (old, self.cursor_rect()):
            if rect is not None:
                self.update(rect)

    def clear(self) -> None:
        """Nothing to show: the session ended."""
        self.set_controlling(False)
        self._cursor = None
        self._cursor_image = None
        self.set_framebuffer(None)

    # -- scaling ------------------------------------------------------------------------

    @property
    def fit(self) -> bool:
        return self._fit

    def set_fit(self, fit: bool) -> None:
        """Fit the whole screen into the window, or show it 1:1 (the scroll area scrolls)."""
        self._fit = fit
        self._relayout()
        self.update()

    def scale(self) -> float:
        """Logical widget pixels per remote pixel."""
        if self._image is None:
            return 1.0
        if not self._fit:
            return 1.0 / self.devicePixelRatioF()
        width, height = self._image.width(), self._image.height()
        return min(self.width() / width, self.height() / height)

    def origin(self) -> QPointF:
        """Where the remote screen's top-left corner is, in widget pixels (centred when fitted)."""
        if self._image is None or not self._fit:
            return QPointF(0, 0)
        scale = self.scale()
        return QPointF((self.width() - self._image.width() * scale) / 2,
                       (self.height() - self._image.height() * scale) / 2)

    def remote_position(self, point: QPointF) -> tuple[int, int]:
        """The novice-screen pixel under a widget position, clamped to the screen."""
        assert self._image is not None
        scale, origin = self.scale(), self.origin()
        x = int((point.x() - origin.x()) / scale)
        y = int((point.y() - origin.y()) / scale)
        return (min(max(x, 0), self._image.width() - 1),
                min(max(y, 0), self._image.height() - 1))

    def natural_size(self) -> QSize:
        """The 1:1 size in logical pixels."""
        if self._image is None:
            return QSize(0, 0)
        ratio = self.devicePixelRatioF()
        return QSize(round(self._image.width() / ratio), round(self._image.height() / ratio))

    def sizeHint(self) -> QSize:
        return self.natural_size() if self._image is not None else QSize(640, 400)

    def _relayout(self) -> None:
        view = self._scroll_area()
        if view is not None:
            view.follow_canvas()

    def _scroll_area(self) -> CanvasView | None:
        parent = self.parentWidget()
        view = parent.parentWidget() if parent is not None else None
        return view if isinstance(view, CanvasView) else None

    def _to_widget(self, rect: QRectF) -> QRect:
        scale, origin = self.scale(), self.origin()
        mapped = QRectF(origin.x() + rect.x() * scale, origin.y() + rect.y() * scale,
                        rect.width() * scale, rect.height() * scale)
        # One more pixel each way: smooth scaling blends a changed pixel into its neighbours.
        return mapped.toAlignedRect().adjusted(-1, -1, 1, 1)

    def cursor_rect(self) -> QRect | None:
        cursor = self._cursor
        if cursor is None or self._cursor_image is None or not cursor.visible:
            return None
        return self._to_widget(QRectF(self._cursor_corner(cursor),
                                      QSizeF(self._cursor_image.size())))

    def _cursor_corner(self, cursor: Cursor) -> QPointF:
        return QPointF(cursor.x - self._hot.x(), cursor.y - self._hot.y())

    # -- painting ---------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent | None) -> None:
        assert event is not None
        painter = QPainter(self)
        try:
            painter.fillRect(event.rect(), BACKGROUND)
            if self._image is None:
                return
            scale, origin = self.scale(), self.origin()
            if scale < 1.0 / self.devicePixelRatioF():
                painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.translate(origin)
            painter.scale(scale, scale)
            # Only the remote pixels under the region Qt asks for.
            wanted = painter.transform().inverted()[0].mapRect(QRectF(event.rect()))
            source = wanted.toAlignedRect().intersected(self._image.rect())
            if not source.isEmpty():
                painter.drawImage(QRectF(source), self._image, QRectF(source))
            cursor = self._cursor
            if cursor is not None and cursor.visible and self._cursor_image is not None:
                painter.drawImage(self._cursor_corner(cursor), self._cursor_image)
        finally:
            painter.end()

    def resizeEvent(self, event: QResizeEvent | None) -> None:
        super().resizeEvent(event)
        self.update()

    # -- input ------------------------------------------------------------------------------

    @property
    def controlling(self) -> bool:
        return self._controlling

    def set_controlling(self, controlling: bool) -> None:
        """Forward input from now on (True), or stop at once (False)."""
        self._controlling = controlling
        self._held_keys.clear()
        self._wheel = QPoint()
        self.setCursor(Qt.CursorShape.BlankCursor if controlling else Qt.CursorShape.ArrowCursor)
        if controlling:
            self.setFocus()

    def _forwarding(self) -> bool:
        return self._controlling and self._image is not None

    def _mouse(self, event: QMouseEvent | None) -> None:
        assert event is not None
        if not self._forwarding():
            event.ignore()
            return
        x, y = self.remote_position(event.position())
        self.pointer_input.emit(x, y, int(_buttons(event.buttons())))
        event.accept()

    def mousePressEvent(self, event: QMouseEvent | None) -> None:
        self._mouse(event)

    def mouseReleaseEvent(self, event: QMouseEvent | None) -> None:
        self._mouse(event)

    def mouseMoveEvent(self, event: QMouseEvent | None) -> None:
        self._mouse(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent | None) -> None:
        # The novice's computer sees press, release, press, release and makes its own double.
        self._mouse(event)

    def wheelEvent(self, event: QWheelEvent | None) -> None:
        assert event is not None
        if not self._forwarding():
            event.ignore()
            return
        # High-resolution wheels and touchpads send fractions of a click: add them up.
        self._wheel += event.angleDelta()
        dx, dy = int(self._wheel.x() / WHEEL_CLICK), int(self._wheel.y() / WHEEL_CLICK)
        if dx or dy:
            self._wheel -= QPoint(dx * WHEEL_CLICK, dy * WHEEL_CLICK)
            # Qt: positive y is away from the user (up); the protocol: positive dy is down.
            self.scroll_input.emit(-dx, -dy)
        event.accept()

    def _key(self, event: QKeyEvent | None, down: bool) -> None:
        assert event is not None
        if not self._forwarding():
            event.ignore()
            return
        event.accept()
        # The novice's X server repeats a held key itself.
        if event.isAutoRepeat():
            return
        symbol = keysym(event)
        if not symbol:
            return
        if down:
            self._held_keys.add(symbol)
        elif symbol in self._held_keys:
            self._held_keys.discard(symbol)
        else:
            return  # pressed before control began: the novice's side never saw it go down
        self.key_input.emit(symbol, down)

    def keyPressEvent(self, event: QKeyEvent | None) -> None:
        self._key(event, True)

    def keyReleaseEvent(self, event: QKeyEvent | None) -> None:
        self._key(event, False)

    def event(self, event: QEvent | None) -> bool:
        # While driving, every key is the novice's: Alt+F goes to their program, not to this
        # window's File menu. Accepting the override turns a shortcut back into a key press.
        if (event is not None and event.type() == QEvent.Type.ShortcutOverride
                and self._forwarding()):
            event.accept()
            return True
        return super().event(event)

    def focusNextPrevChild(self, next: bool) -> bool:
        # While driving, Tab belongs to the novice's desktop, not to this window's focus chain.
        return False if self._forwarding() else super().focusNextPrevChild(next)

    def focusOutEvent(self, event: QFocusEvent | None) -> None:
        # Keys still held when the window loses focus would stay down on the novice's side.
        for symbol in sorted(self._held_keys):
            self.key_input.emit(symbol, False)
        self._held_keys.clear()
        super().focusOutEvent(event)


class CanvasView(QScrollArea):
    """The canvas in a scroll area: fitted to the window, or 1:1 with scroll bars."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = Canvas()
        self.setWidget(self.canvas)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setFocusProxy(self.canvas)
        self.follow_canvas()

    def follow_canvas(self) -> None:
        """Fit: the canvas is the viewport. 1:1: the canvas is its natural size and scrolls."""
        fit = self.canvas.fit or self.canvas.framebuffer is None
        self.setWidgetResizable(fit)
        if not fit:
            self.canvas.resize(self.canvas.natural_size())
