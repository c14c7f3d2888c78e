"""The sharer's half of the stream: capture, encode, send, paced by the viewer's acks.

DESIGN.md "The streaming engine", points 4 to 7, live here:

- the viewer acknowledges each frame once decoded; at most `window` frames are in flight, and
  the next capture happens only when a slot is free, so a slow link never makes memory grow and
  the viewer always converges on the latest screen;
- capture follows the display, not a clock: the loop sleeps until the X connection has news
  (damage, a new cursor shape, a resize) and grabs at once. A fixed 60 Hz tick beside an
  application drawing at 60 Hz drifts into phase with it and loses every other frame (measured
  with `ra-bench e2e`: 78 % delivered on a drag at a fixed tick, 99 % damage-driven). The cap is
  a token bucket (`RateLimit`): on average no more than `max_fps` frames, with a little burst to
  absorb jitter;
- the encoder's reference is the last frame *sent*, so captures that are never sent coalesce;
- the cursor travels beside the frames: its position whenever it moves, its shape only when the
  shape changed;
- a keyframe on connect (a new encoder), on resize (the encoder sees the new shape) and when
  the viewer asks (`refresh`).

Capturing and encoding run on `CaptureThread`, the one thread that owns the X connections; the
native codec releases the GIL, so the event loop stays free to read input and chat meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import select
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from engine.capture import CaptureError, CursorImage, FrameSource
from engine.channel import first_to_finish
from engine.codec import Encoder
from engine.protocol import Cursor, Frame, Message, Reason

__all__ = [
    "DEFAULT_MAX_FPS",
    "DEFAULT_WINDOW",
    "CaptureThread",
    "FlowWindow",
    "RateLimit",
    "Streamer",
    "capture_failure",
]

DEFAULT_MAX_FPS = 60
# Two frames in flight: one being decoded while the next travels. More only adds latency on a
# slow link (each queued frame is a frame period of delay); fewer halves the rate on a fast one.
DEFAULT_WINDOW = 2
# The pointer is polled (X reports no motion of a pointer that programs warp): every frame
# period while it moves, and this often once it has been still for POINTER_REST seconds.
POINTER_IDLE_POLL = 0.05
POINTER_REST = 1.0

T = TypeVar("T")


class CaptureThread:
    """The one thread that talks to the display; the source is made there, on first use.

    After a `CaptureError` the source is dropped, so the next session tries the display anew.
    """

    def __init__(self, open_source: Callable[[], FrameSource]) -> None:
        self._open_source = open_source
        self._source: FrameSource | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="capture")

    def source(self) -> FrameSource:
        """The frame source; call on the capture thread only."""
        if self._source is None:
            self._source = self._open_source()
        return self._source

    async def wait_for_news(self, timeout: float) -> None:
        """Until the display's connection has something to read, or `timeout` seconds.

        The wait happens on the capture thread, which has nothing else to do meanwhile: the
        event loop (asyncio's or Qt's, under qasync) never watches the X connection itself.
        """
        await self.run(functools.partial(self._wait_for_news, timeout))

    def _wait_for_news(self, timeout: float) -> None:
        fd = self.source().fileno()
        if fd is None:
            time.sleep(timeout)
        else:
            select.select([fd], [], [], timeout)

    async def run(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except CaptureError:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._drop)
            raise

    def _drop(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            # The display may be gone already: closing is best effort.
            with contextlib.suppress(Exception):
                source.close()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._drop)
        self._executor.shutdown(wait=False)


class FlowWindow:
    """Frames sent and not yet acknowledged, and the round trip the acks measure."""

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError("the window holds at least one frame")
        self.size = size
        self._sent: OrderedDict[int, float] = OrderedDict()
        self._opened = asyncio.Event()
        self._opened.set()
        self.round_trip: float | None = None

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    def sent(self, seq: int, now: float) -> None:
        self._sent[seq] = now
        if len(self._sent) >= self.size:
            self._opened.clear()

    def acked(self, seq: int, now: float) -> bool:
        """Frame `seq` and every earlier one arrived; False if `seq` was never in flight."""
        sent_at = self._sent.get(seq)
        if sent_at is None:
            return False
        while self._sent:
            first, _ = self._sent.popitem(last=False)
            if first == seq:
                break
        self.round_trip = now - sent_at
        self._opened.set()
        return True

    async def wait_open(self) -> None:
        await self._opened.wait()


class RateLimit:
    """A token bucket: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float = 2.0) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_time(self, now: float) -> float:
        """Seconds until a token is there (0 when one is)."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate)

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1.0


class Streamer:
    """Streams one display to one viewer until cancelled or the display fails."""

    def __init__(self, send: Callable[[Message], Awaitable[None]], capture: CaptureThread, *,
                 max_fps: float = DEFAULT_MAX_FPS, window: int = DEFAULT_WINDOW) -> None:
        if max_fps <= 0:
            raise ValueError("the frame rate cap must be positive")
        self._send = send
        self._capture = capture
        self.period = 1.0 / max_fps
        self.rate = RateLimit(max_fps)
        self.window = FlowWindow(window)
        self._encoder = Encoder()
        self._refresh = True
        self._seq = 0
        self._cursor_sent: tuple[int, int, int] | None = None
        self.frames_sent = 0
        self.bytes_sent = 0

    def refresh(self) -> None:
        """Send the next frame whole (the viewer asked, after a decode error)."""
        self._refresh = True

    def acked(self, seq: int) -> bool:
        return self.window.acked(seq, time.monotonic())

    async def run(self) -> None:
        """Capture and send until cancelled; a failing display raises `CaptureError`.

        Sending runs beside capturing: the next grab and encode (on the capture thread) overlap
        the encryption and transmission of the previous frame (on the loop's thread).
        """
        outbox: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
        await first_to_finish(self._produce(outbox), self._deliver(outbox))

    async def _deliver(self, outbox: asyncio.Queue[Message]) -> None:
        while True:
            await self._send(await outbox.get())

    async def _produce(self, outbox: asyncio.Queue[Message]) -> None:
        pointer_moved = time.monotonic()
        while True:
            await self.window.wait_open()
            delay = self.rate.wait_time(time.monotonic())
            if delay > 0:
                await asyncio.sleep(delay)
            keyframe, self._refresh = self._refresh, False
            data, cursor, news = await self._capture.run(
                functools.partial(self._step, keyframe))
            if cursor is not None:
                pointer_moved = time.monotonic()
                await outbox.put(cursor)
            if data:
                self.rate.take(time.monotonic())
                self._seq = (self._seq + 1) & 0xFFFFFFFF
                self.window.sent(self._seq, time.monotonic())
                await outbox.put(Frame(seq=self._seq, data=data))
                self.frames_sent += 1
                self.bytes_sent += len(data)
            elif not news and not self._refresh:
                still = time.monotonic() - pointer_moved > POINTER_REST
                await self._capture.wait_for_news(POINTER_IDLE_POLL if still else self.period)

    def _step(self, keyframe: bool) -> tuple[bytes, Cursor | None, bool]:
        """On the capture thread: one grab (if anything changed), its message, the pointer,
        and whether the display already reported more for the next grab."""
        source = self._capture.source()
        frame = source.grab(force=keyframe)
        data = b"" if frame is None else self._encoder.encode(frame, keyframe=keyframe)
        return data, self._cursor_message(source.cursor()), source.pending()

    def _cursor_message(self, image: CursorImage | None) -> Cursor | None:
        if image is None:
            return None
        last = self._cursor_sent
        if last is not None and last == (image.x, image.y, image.serial):
            return None
        shape_changed = last is None or last[2] != image.serial
        self._cursor_sent = (image.x, image.y, image.serial)
        return Cursor(x=image.x, y=image.y, visible=True, hot_x=image.hot_x, hot_y=image.hot_y,
                      width=image.width, height=image.height,
                      pixels=image.pixels if shape_changed else b"")


def capture_failure(exc: CaptureError, sharer_name: str) -> tuple[Reason, str]:
    """What the expert is told when the novice's screen cannot be captured."""
    return Reason.INTERNAL_ERROR, f"{sharer_name}'s screen cannot be shown any more ({exc})"
