"""The frame message: what the encoder sends and the decoder trusts nothing of.

Wire format, version 1 (all integers little-endian)::

    header, 20 bytes, uncompressed
      u8   version          1
      u8   flags            bit 0: keyframe (the frame is sent whole; the decoder starts over)
                            bit 1: stored (the payload follows as it is, not compressed)
      u16  tile             tile edge in pixels, 8..256; edge tiles are partial
      u16  width, height    frame size in pixels, 1..65535 each
      u32  tile_count       tiles in this message
      u16  copy_count       copy-rects in this message
      u16  reserved         0
      u32  payload_size     size of the payload once decompressed
    payload, one zstd frame, or payload_size bytes as they are when stored (absent when
    tile_count and copy_count are both 0)
      copy_count × (u16 src_x, src_y, width, height, dst_x, dst_y)
      tile_count × u32      tile indices, strictly increasing, row-major over the tile grid
      tile_count × u8       tile modes (Mode)
      tile data, in index order:
        SOLID  3 bytes      B, G, R of every pixel in the tile
        XOR    3·w·h bytes  B, G, R of each pixel XOR the decoder's current pixel, row-major
        RAW    3·w·h bytes  B, G, R of each pixel, row-major

Copy-rects are applied first, in order, each reading the framebuffer as the previous one left
it and each as if through a temporary (memmove: a copy may overlap itself); then the tiles,
XOR against the result. A keyframe carries every tile, no XOR and no copy. The encoder finds
copies by motion search (`ext/motion.pyx`): vertical scrolls of a region, horizontal moves,
and moves in both directions at once; a decoder takes any copy that fits the frame.
A frame with nothing to send is not a message: the encoder returns b"".

Frames are BGRX ``uint8`` arrays (H, W, 4) as mss returns them. The padding byte is not sent;
the decoder's framebuffer has it at 0xFF, so it can be shown as an opaque RGB32 image.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import ClassVar, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import pyzstd

__all__ = [
    "VERSION",
    "CodecError",
    "Copies",
    "Decoder",
    "Encoder",
    "Mode",
    "Rect",
    "TileKernel",
    "TileMap",
    "TileRange",
    "tile_grid",
]

VERSION = 1
HEADER = struct.Struct("<BBHHHIHHI")
COPY = struct.Struct("<6H")
FLAG_KEYFRAME = 0x01
FLAG_STORED = 0x02
MIN_TILE, MAX_TILE = 8, 256
MAX_SIDE = 0xFFFF
# 8K UHD with room to spare: the largest framebuffer a hostile header can make us allocate
# (about 256 MiB).
DEFAULT_MAX_PIXELS = 8192 * 8192
# Level 1 measured best here for ordinary updates: on small updates the levels differ by a
# few bytes (`ra-bench codec`).
DEFAULT_ZSTD_LEVEL = 1
# Past this many payload bytes (most of a screen changed at once) speed matters more than
# the last bytes. Measured on the 1080p `full` workload (6.2 MB of packed photo pixels):
# level 1 takes 9.9 ms for 5.16 MB, level -1 2.3 ms for 6.22 MB, which is still less than
# zstd-1 of the raw frame (6.36 MB) since the padding byte is not sent. A 640x360 video
# (0.8 MB) stays below the threshold and keeps level 1.
LARGE_PAYLOAD = 1 << 20
FAST_ZSTD_LEVEL = -1
# A large payload is first sampled: SAMPLES windows of SAMPLE_SIZE bytes spread over it,
# compressed together. A full screen of photo with sensor grain (`ra-bench e2e`'s full
# workload) does not shrink at all at the fast level, yet zstd takes 4 ms over its 6.2 MB
# (level 1 saves 13 % in 12 ms). When the sample shrinks by less than 1 - STORE_RATIO, the
# payload is stored as it is, and the viewer skips decompression too.
SAMPLES = 16
SAMPLE_SIZE = 8 * 1024
STORE_RATIO = 0.95
# Motion search runs only when at least this many tiles changed: typing and a blinking
# cursor touch one or two, and pay nothing for it.
MOTION_MIN_TILES = 4
# A copy-rect must explain at least this many rows (or columns): shorter runs are as likely
# chance as motion, and the tiles carry them as well.
MOTION_MIN_RUN = 8

Frame = npt.NDArray[np.uint8]
# Per tile (tile rows, tile columns): the first row that differs, -1 where none does.
TileMap = npt.NDArray[np.int32]
# Copy-rects as int32 rows of (src_x, src_y, width, height, dst_x, dst_y).
Copies = npt.NDArray[np.int32]
# Tile columns and rows x0, y0, x1, y1, ends excluded.
TileRange = tuple[int, int, int, int]
NO_COPIES: Copies = np.empty((0, 6), np.int32)
MAX_COPIES = 0xFFFF


class Mode(IntEnum):
    SOLID = 0
    XOR = 1
    RAW = 2


class CodecError(ValueError):
    """A frame message is malformed: the peer sent garbage, or it does not fit this frame."""


class Rect(NamedTuple):
    x: int
    y: int
    width: int
    height: int


class TileKernel(Protocol):
    """The per-tile work, in native code or in its numpy twin; the format lives here.

    `Encoder` and `Decoder` are bound to a kernel by subclassing (`kernel_class`), so each
    instance has its own kernel and its scratch buffers. The tile map `first_diff` is int32
    (tile rows, tile columns): the first row that differs inside each tile, -1 for none.
    """

    name: str

    def scan(self, cur: Frame, ref: Frame, tile: int, first_diff: TileMap,
             tile_range: TileRange) -> int:
        """Fill `first_diff` for the tiles in `tiles`; return how many of them differ."""
        ...

    def find_motion(self, cur: Frame, ref: Frame, tile: int,
                    first_diff: TileMap, min_tiles: int, min_run: int) -> Copies:
        """Copy-rects, in the order to apply them, that explain content that moved, from each
        group of at least `min_tiles` touching dirty tiles."""
        ...

    def apply_copies(self, fb: Frame, copies: Copies) -> None:
        """Apply validated copy-rects in order, each as if through a temporary."""
        ...

    def encode_tiles(
        self, cur: Frame, ref: Frame, tile: int, keyframe: bool,
        first_diff: TileMap,
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8], memoryview]:
        """The tiles `first_diff` marks (all on a keyframe), packed; `ref` becomes `cur`."""
        ...

    def apply_tiles(
        self,
        fb: Frame,
        tile: int,
        indices: npt.NDArray[np.uint32],
        modes: npt.NDArray[np.uint8],
        data: memoryview,
    ) -> None:
        """Write validated tiles into `fb`."""
        ...


def tile_grid(width: int, height: int, tile: int) -> tuple[int, int]:
    """Tile columns and rows covering a frame."""
    return -(-width // tile), -(-height // tile)


class Encoder:
    """Turns successive frames into messages that bring a `Decoder` up to date.

    The reference is the last frame *encoded*, which is what the decoder has: a capture
    that is never encoded (skipped under back-pressure) simply coalesces into the next one.

    Each frame is scanned against the reference first. When at least `MOTION_MIN_TILES`
    tiles changed, the motion search looks for content that moved; its copies are applied
    to the reference exactly as the decoder will apply them, the tiles they touched are
    scanned again, and only what the copies did not explain is sent as tiles.
    `motion=False` turns the search off (to measure what it saves).
    """

    kernel_class: ClassVar[type[TileKernel]]

    def __init__(self, tile_size: int = 64, level: int = DEFAULT_ZSTD_LEVEL,
                 fast_level: int = FAST_ZSTD_LEVEL, motion: bool = True):
        if not MIN_TILE <= tile_size <= MAX_TILE:
            raise ValueError(f"tile size must be {MIN_TILE}..{MAX_TILE}, not {tile_size}")
        self.kernel = self.kernel_class()
        self.tile_size = tile_size
        self.motion = motion
        self._compressor = pyzstd.ZstdCompressor(level)
        self._fast_compressor = pyzstd.ZstdCompressor(fast_level)
        self._reference: Frame | None = None
        self._first_diff = np.empty((0, 0), np.int32)
        self._keyframe_due = True

    @property
    def reference(self) -> Frame | None:
        """The frame the decoder holds once it has decoded every message so far."""
        return self._reference

    def request_keyframe(self) -> None:
        """Send the next frame whole (a viewer joined, or asked after a decode error)."""
        self._keyframe_due = True

    def encode(self, frame: Frame, *, keyframe: bool = False) -> bytes:
        """One message for `frame`, or b"" when nothing changed since the last one."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 4:
            raise ValueError(f"expected a BGRX uint8 frame (H, W, 4), not {frame.dtype} "
                             f"{frame.shape}")
        height, width = frame.shape[:2]
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise ValueError(f"frame size {width}x{height} is outside 1..{MAX_SIDE}")
        frame = np.ascontiguousarray(frame)
        tile = self.tile_size
        columns, rows = tile_grid(width, height, tile)
        ref = self._reference
        if ref is None or ref.shape != frame.shape:
            ref = self._reference = np.empty_like(frame)
            self._first_diff = np.empty((rows, columns), np.int32)
            keyframe = True
        keyframe = keyframe or self._keyframe_due
        self._keyframe_due = False
        first_diff = self._first_diff
        copies = NO_COPIES
        if not keyframe:
            dirty = self.kernel.scan(frame, ref, tile, first_diff, (0, 0, columns, rows))
            if dirty == 0:
                return b""
            if self.motion and dirty >= MOTION_MIN_TILES:
                copies = self._follow_motion(frame, ref, first_diff)
        indices, modes, data = self.kernel.encode_tiles(frame, ref, tile, keyframe, first_diff)
        count = len(indices)
        if count == 0 and not len(copies):
            return b""
        tables = (copies.astype("<u2").tobytes(), indices.astype("<u4", copy=False).tobytes(),
                  modes.tobytes())
        payload_size = sum(map(len, tables)) + len(data)
        large = payload_size > LARGE_PAYLOAD
        stored = large and not self._compresses(data)
        flags = (FLAG_KEYFRAME if keyframe else 0) | (FLAG_STORED if stored else 0)
        header = HEADER.pack(VERSION, flags, tile, width, height, count, len(copies), 0,
                             payload_size)
        if stored:
            return b"".join((header, *tables, data))
        compressor = self._fast_compressor if large else self._compressor
        compress, more = compressor.compress, pyzstd.ZstdCompressor.CONTINUE
        return b"".join((
            header,
            *(compress(table, more) for table in tables),
            compress(data, pyzstd.ZstdCompressor.FLUSH_FRAME),
        ))

    def _compresses(self, data: memoryview) -> bool:
        """Whether zstd shrinks `data` enough to be worth its time, judged on a sample."""
        step = len(data) // SAMPLES
        sample = b"".join(data[n * step:n * step + SAMPLE_SIZE] for n in range(SAMPLES))
        packed = self._fast_compressor.compress(sample, pyzstd.ZstdCompressor.FLUSH_FRAME)
        return len(packed) < STORE_RATIO * len(sample)

    def _follow_motion(self, frame: Frame, ref: Frame,
                       first_diff: TileMap) -> Copies:
        """Find moved content, move it in the reference as the decoder will, and rescan there."""
        copies = self.kernel.find_motion(frame, ref, self.tile_size, first_diff,
                                         MOTION_MIN_TILES, MOTION_MIN_RUN)
        # The header counts copies in a u16. Any copy may be left out (the tiles then carry
        # what it would have explained), so the excess is simply dropped.
        copies = copies[:MAX_COPIES]
        if not len(copies):
            return copies
        self.kernel.apply_copies(ref, copies)
        tile = self.tile_size
        x0, y0 = int(copies[:, 4].min()), int(copies[:, 5].min())
        x1 = int((copies[:, 4] + copies[:, 2]).max())
        y1 = int((copies[:, 5] + copies[:, 3]).max())
        self.kernel.scan(frame, ref, tile, first_diff,
                         (x0 // tile, y0 // tile, -(-x1 // tile), -(-y1 // tile)))
        return copies


class Decoder:
    """Applies messages to a framebuffer, checking every field before writing anything.

    A malformed message raises `CodecError` and leaves the framebuffer as it was.
    """

    kernel_class: ClassVar[type[TileKernel]]

    def __init__(self, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.kernel = self.kernel_class()
        self.max_pixels = max_pixels
        self.framebuffer: Frame | None = None

    def decode(self, message: bytes | bytearray | memoryview) -> list[Rect]:
        """Apply one message; return the rectangles of the framebuffer it changed."""
        view = memoryview(message).cast("B")
        if len(view) < HEADER.size:
            raise CodecError(f"message of {len(view)} bytes is shorter than the header")
        (version, flags, tile, width, height, count, copies, reserved,
         payload_size) = HEADER.unpack_from(view)
        if version != VERSION:
            raise CodecError(f"frame format version {version} is not supported (this is {VERSION})")
        if flags & ~(FLAG_KEYFRAME | FLAG_STORED) or reserved:
            raise CodecError(f"unknown flags {flags:#x} or reserved field {reserved}")
        if not MIN_TILE <= tile <= MAX_TILE:
            raise CodecError(f"tile size {tile} is outside {MIN_TILE}..{MAX_TILE}")
        if width < 1 or height < 1 or width * height > self.max_pixels:
            raise CodecError(f"frame size {width}x{height} is empty or larger than allowed")
        keyframe = bool(flags & FLAG_KEYFRAME)
        fb = self.framebuffer
        if not keyframe and (fb is None or fb.shape[:2] != (height, width)):
            raise CodecError(f"a {width}x{height} update does not fit the framebuffer; "
                             "a keyframe is needed")
        columns, rows = tile_grid(width, height, tile)
        ntiles = columns * rows
        if count > ntiles or (keyframe and (count != ntiles or copies)):
            raise CodecError(f"{count} tiles and {copies} copies do not fit a "
                             f"{'keyframe' if keyframe else 'frame'} of {ntiles} tiles")
        tables = COPY.size * copies + 5 * count
        bound = tables + 3 * width * height
        if not tables <= payload_size <= bound:
            raise CodecError(f"payload claims {payload_size} bytes; this frame needs "
                             f"{tables}..{bound}")
        if flags & FLAG_STORED:
            payload = view[HEADER.size:]
            if len(payload) != payload_size:
                raise CodecError(f"stored payload is {len(payload)} bytes, header {payload_size}")
        else:
            payload = _decompress(view[HEADER.size:], payload_size)

        copy_rects = _parse_copies(payload, copies, width, height)
        offset = COPY.size * copies
        indices = np.frombuffer(payload, "<u4", count, offset).astype(np.uint32, copy=False)
        modes = np.frombuffer(payload, np.uint8, count, offset + 4 * count)
        data = payload[offset + 5 * count:]
        _check_tiles(indices, modes, len(data), keyframe, width, height, tile)

        if keyframe:
            fb = np.empty((height, width, 4), np.uint8)
        assert fb is not None
        if copy_rects:
            self.kernel.apply_copies(fb, np.array(
                [(*src, dst.x, dst.y) for src, dst in copy_rects], np.int32).reshape(-1, 6))
        self.kernel.apply_tiles(fb, tile, indices, modes, data)
        self.framebuffer = fb
        if keyframe:
            return [Rect(0, 0, width, height)]
        return [dst for _, dst in copy_rects] + _tile_runs(indices, columns, width, height, tile)


def _decompress(compressed: memoryview, size: int) -> memoryview:
    if size == 0:
        if len(compressed):
            raise CodecError(f"{len(compressed)} bytes follow an empty message")
        return memoryview(b"")
    try:
        info = pyzstd.get_frame_info(compressed)
    except pyzstd.ZstdError as exc:
        raise CodecError(f"payload is not a zstd frame: {exc}") from None
    if info.decompressed_size is not None and info.decompressed_size != size:
        raise CodecError(f"zstd frame claims {info.decompressed_size} bytes, header {size}")
    decompressor = pyzstd.ZstdDecompressor()
    try:
        # max_length bounds the allocation whatever the frame says about itself.
        payload = decompressor.decompress(compressed, max_length=size + 1)
    except pyzstd.ZstdError as exc:
        raise CodecError(f"payload does not decompress: {exc}") from None
    if len(payload) != size or not decompressor.eof or decompressor.unused_data:
        raise CodecError(f"payload is truncated, longer than {size} bytes, or followed by junk")
    return memoryview(payload)


def _parse_copies(payload: memoryview, copies: int, width: int,
                  height: int) -> list[tuple[Rect, Rect]]:
    rects = []
    for n in range(copies):
        sx, sy, w, h, dx, dy = COPY.unpack_from(payload, COPY.size * n)
        if not (w and h and sx + w <= width and dx + w <= width
                and sy + h <= height and dy + h <= height):
            raise CodecError(f"copy {n} ({w}x{h} from {sx},{sy} to {dx},{dy}) "
                             f"leaves the {width}x{height} frame")
        rects.append((Rect(sx, sy, w, h), Rect(dx, dy, w, h)))
    return rects


def _check_tiles(indices: npt.NDArray[np.uint32], modes: npt.NDArray[np.uint8], data_size: int,
                 keyframe: bool, width: int, height: int, tile: int) -> None:
    columns, rows = tile_grid(width, height, tile)
    if len(indices) and (indices[-1] >= columns * rows or np.any(indices[1:] <= indices[:-1])):
        raise CodecError("tile indices are out of range or not strictly increasing")
    if np.any(modes > max(Mode)) or (keyframe and np.any(modes == Mode.XOR)):
        raise CodecError("a tile mode is unknown, or a keyframe tile is XOR")
    tile_w = np.minimum(tile, width - (indices % columns).astype(np.int64) * tile)
    tile_h = np.minimum(tile, height - (indices // columns).astype(np.int64) * tile)
    need = int(np.where(modes == Mode.SOLID, 3, 3 * tile_w * tile_h).sum())
    if need != data_size:
        raise CodecError(f"tile data is {data_size} bytes; the tiles need {need}")


def _tile_runs(indices: npt.NDArray[np.uint32], columns: int, width: int, height: int,
               tile: int) -> list[Rect]:
    """Changed tiles merged into horizontal runs, one rectangle per run."""
    if not len(indices):
        return []
    idx = indices.astype(np.int64)
    starts = np.flatnonzero(np.r_[True, (np.diff(idx) != 1) | (idx[1:] % columns == 0)])
    ends = np.r_[starts[1:], len(idx)] - 1
    rects = []
    for first, last in zip(idx[starts].tolist(), idx[ends].tolist(), strict=True):
        y = (first // columns) * tile
        x0 = (first % columns) * tile
        x1 = min(width, (last % columns + 1) * tile)
        rects.append(Rect(x0, y, x1 - x0, min(tile, height - y)))
    return rects
