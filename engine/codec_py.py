"""The numpy twin of the native kernel: the correctness oracle and the speed baseline.

It makes the same choices as `ext/` (same scan map, same solid test, same XOR-or-raw guess
from the same sampled rows, same motion search), so both produce the same bytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine import frame_format
from engine.frame_format import Copies, Frame, Mode, TileMap, TileRange, tile_grid

__all__ = ["Decoder", "Encoder", "NumpyKernel", "find_motion", "line_hashes", "scan"]

COLOUR = np.uint32(0x00FFFFFF)
SAMPLE_STEP = 4  # as in delta.pyx
GOLDEN = np.uint32(2654435761)  # as in motion.pyx
COLUMN_ROW_STEP = 4  # as in motion.pyx
# As in motion.pyx:
ANCHOR_WIDTH, ANCHOR_REACH, ANCHOR_TRIES, ANCHOR_SOURCES, ANCHOR_MISSES = 32, 256, 8, 4, 3

Box = tuple[int, int, int, int]  # x0, y0, x1, y1; ends excluded


def _words(frame: Frame) -> npt.NDArray[np.uint32]:
    """A (H, W) view of a BGRX frame, one little-endian word per pixel."""
    return frame.view("<u4")[..., 0]


def scan(cur: Frame, ref: Frame, tile: int, first_diff: TileMap,
         tile_range: TileRange) -> int:
    """Per tile in `tile_range`, the first row where `cur` differs from `ref` (-1: none)."""
    tx0, ty0, tx1, ty1 = tile_range
    if tx0 >= tx1 or ty0 >= ty1:
        return 0
    height, width = cur.shape[:2]
    window = np.s_[ty0 * tile:min(height, ty1 * tile), tx0 * tile:min(width, tx1 * tile)]
    changed = _words(cur)[window] != _words(ref)[window]
    by_tile_column = np.logical_or.reduceat(changed, np.arange(0, changed.shape[1], tile), axis=1)
    padded = np.zeros(((ty1 - ty0) * tile, tx1 - tx0), bool)  # edge bands are short
    padded[:len(by_tile_column)] = by_tile_column
    bands = padded.reshape(ty1 - ty0, tile, tx1 - tx0)
    dirty = bands.any(axis=1)
    first_diff[ty0:ty1, tx0:tx1] = np.where(dirty, bands.argmax(axis=1), -1)
    return int(np.count_nonzero(dirty))


def line_hashes(frame: Frame, x0: int, y0: int, x1: int, y1: int,
                by_rows: bool) -> npt.NDArray[np.uint32]:
    """One hash per row (or column, over every fourth row) of a box: the sum of colours XOR
    position keys, mod 2**32."""
    box = _words(frame)[y0:y1, x0:x1] & COLOUR
    if by_rows:
        return (box ^ _keys(x1 - x0)).sum(axis=1, dtype=np.uint32)
    step = COLUMN_ROW_STEP
    return (box[::step] ^ _keys(y1 - y0)[::step, None]).sum(axis=0, dtype=np.uint32)


def _keys(n: int) -> npt.NDArray[np.uint32]:
    return np.arange(1, n + 1, dtype=np.uint32) * GOLDEN


def _best_offset(hc: npt.NDArray[np.uint32], hr: npt.NDArray[np.uint32]) -> int:
    """The offset (reference line − frame line) most uniquely-hashed lines agree on; 0: none."""
    n = len(hc)
    uc, first_c, count_c = np.unique(hc, return_index=True, return_counts=True)
    ur, first_r, count_r = np.unique(hr, return_index=True, return_counts=True)
    _, a, b = np.intersect1d(uc, ur, assume_unique=True, return_indices=True)
    unique = (count_c[a] == 1) & (count_r[b] == 1)
    offsets = first_r[b[unique]].astype(np.int64) - first_c[a[unique]]
    offsets = offsets[offsets != 0]
    if not len(offsets):
        return 0
    votes = np.bincount(offsets + n, minlength=2 * n)
    best = np.flatnonzero(votes == votes.max()) - n
    return int(best[np.lexsort((best, np.abs(best)))[0]])


def _runs(hc: npt.NDArray[np.uint32], hr: npt.NDArray[np.uint32], offset: int,
          min_run: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    n = len(hc)
    lo, hi = max(0, -offset), min(n, n - offset)
    match = hc[lo:hi] == hr[lo + offset:hi + offset]
    edges = np.diff(np.r_[0, match.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = ends - starts >= min_run
    return starts[keep] + lo, (ends - starts)[keep]


def _search(cur: Frame, ref: Frame, box: Box, by_rows: bool,
            min_run: int) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    hc, hr = line_hashes(cur, *box, by_rows), line_hashes(ref, *box, by_rows)
    offset = _best_offset(hc, hr)
    if offset == 0:
        empty = np.empty(0, np.int64)
        return 0, empty, empty
    return offset, *_runs(hc, hr, offset, min_run)


def _components(dirty: npt.NDArray[np.bool_]) -> list[tuple[int, TileRange]]:
    """Groups of touching (8-connected) dirty tiles in row-major order of their first tile:
    size and tile box of each, as `next_component` in motion.pyx."""
    rows, columns = dirty.shape
    marks = dirty.tolist()
    seen = [[False] * columns for _ in range(rows)]
    groups = []
    for ty, tx in zip(*np.nonzero(dirty), strict=True):
        if seen[ty][tx]:
            continue
        seen[ty][tx] = True
        stack, size = [(int(ty), int(tx))], 0
        box = [int(tx), int(ty), int(tx) + 1, int(ty) + 1]
        while stack:
            y, x = stack.pop()
            size += 1
            box = [min(box[0], x), min(box[1], y), max(box[2], x + 1), max(box[3], y + 1)]
            for ny in range(max(0, y - 1), min(rows, y + 2)):
                for nx in range(max(0, x - 1), min(columns, x + 2)):
                    if marks[ny][nx] and not seen[ny][nx]:
                        seen[ny][nx] = True
                        stack.append((ny, nx))
        groups.append((size, (box[0], box[1], box[2], box[3])))
    return groups


def _changed_box(cur: Frame, ref: Frame, tile: int,
                 tiles: TileRange) -> Box | None:
    px0, py0 = tiles[0] * tile, tiles[1] * tile
    window = np.s_[py0:tiles[3] * tile, px0:tiles[2] * tile]
    changed = _words(cur)[window] != _words(ref)[window]
    rows, columns = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    if not len(rows):
        return None
    return (px0 + int(columns[0]), py0 + int(rows[0]),
            px0 + int(columns[-1]) + 1, py0 + int(rows[-1]) + 1)


def find_motion(cur: Frame, ref: Frame, tile: int, first_diff: TileMap, min_tiles: int,
                min_run: int) -> Copies:
    """Copy-rects that turn `ref` into `cur` where content moved, as `ext/motion.pyx`."""
    groups = _components(first_diff >= 0)
    large = [tiles for size, tiles in groups if size >= min_tiles]
    whole = (min(t[0] for _, t in groups), min(t[1] for _, t in groups),
             max(t[2] for _, t in groups), max(t[3] for _, t in groups)) if groups else None
    box = _changed_box(cur, ref, tile, whole) if large and whole else None
    if box is None:
        return np.empty((0, 6), np.int32)
    copies, explained = _box_motion(cur, ref, box, min_run)
    if 2 * explained < _area(box) and len(large) >= 2:
        group_copies: list[tuple[int, ...]] = []
        group_explained = 0
        for tiles in large:
            group_box = _changed_box(cur, ref, tile, tiles)
            if group_box is not None:
                found, pixels = _box_motion(cur, ref, group_box, min_run)
                group_copies += found
                group_explained += pixels
        if group_explained > explained:
            copies = group_copies
    return np.array(copies, np.int32).reshape(-1, 6)


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _box_motion(cur: Frame, ref: Frame, box: Box,
                min_run: int) -> tuple[list[tuple[int, ...]], int]:
    """The copies found in one box and the pixels they explain, as `box_motion` in
    motion.pyx. If they explain less than half of it, the lines are hashed again across the
    busiest part of the box only, and the answer that explains more wins; if lines still
    explain less than half, an anchor is tried."""
    copies, explained = _copies_in_box(cur, ref, box, box, box, min_run)
    if 2 * explained < _area(box):
        rows_box, columns_box = _busiest(cur, ref, box)
        if rows_box != box or columns_box != box:
            found, pixels = _copies_in_box(cur, ref, box, rows_box, columns_box, min_run)
            if pixels > explained:
                copies, explained = found, pixels
    if 2 * explained < _area(box):
        found, pixels = _anchor_motion(cur, ref, box, min_run)
        if pixels > explained:
            copies, explained = found, pixels
    return copies, explained


def _anchor_motion(cur: Frame, ref: Frame, box: Box,
                   min_run: int) -> tuple[list[tuple[int, ...]], int]:
    """The largest copy grown from an anchor, at least `min_run` rows tall, and the pixels
    it explains, as `anchor_motion` in motion.pyx."""
    x0, y0, x1, y1 = box
    if x1 - x0 < ANCHOR_WIDTH:
        return [], 0
    cur_words, ref_words = _words(cur) & COLOUR, _words(ref) & COLOUR
    best: tuple[int, ...] = ()
    misses = 0
    for k in range(ANCHOR_TRIES):
        # From the middle out, as `middle_out` in motion.pyx.
        band = ANCHOR_TRIES // 2 - 1 - k // 2 if k % 2 == 0 else ANCHOR_TRIES // 2 + k // 2
        rows = range(y0 + band * (y1 - y0) // ANCHOR_TRIES,
                     y0 + (band + 1) * (y1 - y0) // ANCHOR_TRIES)
        found = next(((y, x) for y in rows
                      if (x := _anchor_column(cur_words[y, x0:x1], ref_words[y, x0:x1])) >= 0),
                     None)
        if found is None:
            continue
        ay, ax = found[0], min(max(x0 + found[1] - ANCHOR_WIDTH // 2, x0), x1 - ANCHOR_WIDTH)
        sources = _anchor_sources(cur_words[ay, ax:ax + ANCHOR_WIDTH], ref_words, box, ax, ay)
        misses += not sources
        if misses == ANCHOR_MISSES:
            break
        for dx, dy in sources:
            rect = _grow(cur_words, ref_words, box, dx, dy, [ax, ay, ax + ANCHOR_WIDTH, ay + 1])
            area = (rect[2] - rect[0]) * (rect[3] - rect[1])
            if rect[3] - rect[1] >= min_run and area > (best[2] * best[3] if best else 0):
                best = (rect[0] + dx, rect[1] + dy, rect[2] - rect[0], rect[3] - rect[1],
                        rect[0], rect[1])
        if best and 2 * best[2] * best[3] >= _area(box):
            break
    return ([best], best[2] * best[3]) if best else ([], 0)


def _anchor_column(row: npt.NDArray[np.uint32], before: npt.NDArray[np.uint32]) -> int:
    """The position nearest the middle of the row's changed pixels (on a tie, the one at or
    right of it) where it changed and has an edge; -1 if none, as `anchor_column` in
    motion.pyx."""
    changed = np.flatnonzero(row != before)
    if not len(changed):
        return -1
    first, last = int(changed[0]), int(changed[-1])
    middle = (first + last) // 2
    edges = first + np.flatnonzero((row[first:last] != before[first:last])
                                   & (row[first:last] != row[first + 1:last + 1]))
    if not len(edges):
        return -1
    # The order motion.pyx looks in: middle, middle - 1, middle + 1, middle - 2, ...
    order = np.where(edges >= middle, 2 * (edges - middle), 2 * (middle - edges) - 1)
    return int(edges[np.argmin(order)])


def _anchor_sources(anchor: npt.NDArray[np.uint32], ref_words: npt.NDArray[np.uint32],
                    box: Box, ax: int, ay: int) -> list[tuple[int, int]]:
    """Where in the box, within ANCHOR_REACH and not in place, the reference holds the
    anchor's pixels: the first ANCHOR_SOURCES offsets in row-major order, as
    `anchor_sources` in motion.pyx."""
    sy0, sx0 = max(box[1], ay - ANCHOR_REACH), max(box[0], ax - ANCHOR_REACH)
    sy1 = min(box[3], ay + ANCHOR_REACH + 1)
    sx1 = min(box[2] - ANCHOR_WIDTH, ax + ANCHOR_REACH) + 1
    found: list[tuple[int, int]] = []
    for y, x in zip(*np.nonzero(ref_words[sy0:sy1, sx0:sx1] == anchor[0]), strict=True):
        sx, sy = sx0 + int(x), sy0 + int(y)
        if (sx, sy) != (ax, ay) and (ref_words[sy, sx:sx + ANCHOR_WIDTH] == anchor).all():
            found.append((sx - ax, sy - ay))
            if len(found) == ANCHOR_SOURCES:
                break
    return found


def _grow(cur_words: npt.NDArray[np.uint32], ref_words: npt.NDArray[np.uint32], box: Box,
          dx: int, dy: int, rect: list[int]) -> list[int]:
    """`rect` grown a line at a time on each side in turn while the new line moved by
    (dx, dy), as `grow` in motion.pyx."""
    height, width = cur_words.shape
    limits = (max(box[0], -dx), max(box[1], -dy), min(box[2], width - dx),
              min(box[3], height - dy))
    grew = True
    while grew:
        grew = False
        for side in (1, 3, 0, 2):  # top, bottom, left, right
            outward = side >= 2
            if not (rect[side] < limits[side] if outward else rect[side] > limits[side]):
                continue
            x0, y0, x1, y1 = rect
            line = rect[side] if outward else rect[side] - 1
            if side % 2:
                y0, y1 = line, line + 1
            else:
                x0, x1 = line, line + 1
            if (cur_words[y0:y1, x0:x1] == ref_words[y0 + dy:y1 + dy, x0 + dx:x1 + dx]).all():
                rect[side] += 1 if outward else -1
                grew = True
    return rect


def _busiest(cur: Frame, ref: Frame, box: Box) -> tuple[Box, Box]:
    """The box narrowed to the columns (for the row search) and to the rows (for the column
    search) that changed at least half as often as the busiest one, counted over every
    COLUMN_ROW_STEP-th row, each standing for the rows up to the next, as `busiest` in
    motion.pyx."""
    x0, y0, x1, y1 = box
    step = COLUMN_ROW_STEP
    changed = _words(cur)[y0:y1:step, x0:x1] != _words(ref)[y0:y1:step, x0:x1]
    per_column, per_row = changed.sum(axis=0), changed.sum(axis=1)
    columns = np.flatnonzero(2 * per_column >= per_column.max())
    rows = np.flatnonzero(2 * per_row >= per_row.max())
    return ((x0 + int(columns[0]), y0, x0 + int(columns[-1]) + 1, y1),
            (x0, y0 + step * int(rows[0]), x1, min(y1, y0 + step * (int(rows[-1]) + 1))))


def _widen(cur: Frame, ref: Frame, inner: Box, outer: Box, by_rows: bool, offset: int,
           starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> tuple[int, int]:
    """The extent across the motion of copies found in `inner`, grown within `outer` while
    every moved line still matches, as `widen` in motion.pyx."""
    axis = 0 if by_rows else 1
    lo, hi, first, last = inner[axis], inner[axis + 2], outer[axis], outer[axis + 2]
    if not len(starts) or (lo == first and hi == last):
        return lo, hi
    cur_words, ref_words = _words(cur), _words(ref)
    if not by_rows:
        cur_words, ref_words = cur_words.T, ref_words.T
    base = inner[1 - axis]
    lines = np.concatenate([np.arange(base + s, base + s + n)
                            for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)])
    moved = ((cur_words[lines, first:last] ^ ref_words[lines + offset, first:last])
             & COLOUR == 0).all(axis=0)
    while lo > first and moved[lo - 1 - first]:
        lo -= 1
    while hi < last and moved[hi - first]:
        hi += 1
    return lo, hi


def _copies_in_box(cur: Frame, ref: Frame, box: Box, rows_box: Box, columns_box: Box,
                   min_run: int) -> tuple[list[tuple[int, ...]], int]:
    """The copies found in one box, in the order to apply them, and the pixels they explain.
    Rows are hashed across `rows_box`, columns across `columns_box`, and copies widened to
    as much of `box` as moved. Rows first; columns only if rows explain less than half the
    box."""
    x0, y0 = box[:2]
    copies: list[tuple[int, ...]]
    dy, row_starts, row_lengths = _search(cur, ref, rows_box, True, min_run)
    left, right = _widen(cur, ref, rows_box, box, True, dy, row_starts, row_lengths)
    row_pixels = int(row_lengths.sum()) * (right - left)
    column_pixels = 0
    if 2 * row_pixels < _area(box):
        dx, column_starts, column_lengths = _search(cur, ref, columns_box, False, min_run)
        top, bottom = _widen(cur, ref, columns_box, box, False, dx, column_starts,
                             column_lengths)
        column_pixels = int(column_lengths.sum()) * (bottom - top)
    if column_pixels > row_pixels:
        copies = [(x0 + s + dx, top, n, bottom - top, x0 + s, top)
                  for s, n in zip(column_starts.tolist(), column_lengths.tolist(), strict=True)]
        order, pixels = (1 if dx > 0 else -1), column_pixels
    else:
        copies = [(left, y0 + s + dy, right - left, n, left, y0 + s)
                  for s, n in zip(row_starts.tolist(), row_lengths.tolist(), strict=True)]
        order, pixels = (1 if dy > 0 else -1), row_pixels
    # Apply in the order that never reads what an earlier copy wrote.
    return copies[::order], pixels


def apply_copies(fb: Frame, copies: Copies) -> None:
    for sx, sy, width, height, dx, dy in copies.tolist():
        # numpy assigns through a temporary when source and destination overlap, which is
        # the memmove semantics the format asks for (tests/test_motion.py checks it).
        fb[dy:dy + height, dx:dx + width] = fb[sy:sy + height, sx:sx + width]


class NumpyKernel:
    name = "numpy"

    def scan(self, cur: Frame, ref: Frame, tile: int, first_diff: TileMap,
             tile_range: TileRange) -> int:
        return scan(cur, ref, tile, first_diff, tile_range)

    def find_motion(self, cur: Frame, ref: Frame, tile: int,
                    first_diff: TileMap, min_tiles: int, min_run: int) -> Copies:
        return find_motion(cur, ref, tile, first_diff, min_tiles, min_run)

    def apply_copies(self, fb: Frame, copies: Copies) -> None:
        apply_copies(fb, copies)

    def encode_tiles(
        self, cur: Frame, ref: Frame, tile: int, keyframe: bool,
        first_diff: TileMap,
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8], memoryview]:
        height, width = cur.shape[:2]
        columns, rows = tile_grid(width, height, tile)
        dirty = np.ones((rows, columns), bool) if keyframe else first_diff >= 0
        cur_words, ref_words = _words(cur), _words(ref)
        indices, modes, chunks = [], [], []
        for ty, tx in zip(*np.nonzero(dirty), strict=True):
            window = np.s_[ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile]
            pixels = cur_words[window] & COLOUR
            if np.all(pixels == pixels[0, 0]):
                mode, chunk = Mode.SOLID, cur[window][0, 0, :3]
            elif not keyframe and _xor_beats_raw(pixels, cur_words[window] ^ ref_words[window]):
                mode, chunk = Mode.XOR, (cur[window] ^ ref[window])[..., :3]
            else:
                mode, chunk = Mode.RAW, cur[window][..., :3]
            indices.append(ty * columns + tx)
            modes.append(mode)
            chunks.append(chunk.tobytes())
            ref[window] = cur[window]
        return (np.array(indices, np.uint32), np.array(modes, np.uint8),
                memoryview(b"".join(chunks)))

    def apply_tiles(
        self,
        fb: Frame,
        tile: int,
        indices: npt.NDArray[np.uint32],
        modes: npt.NDArray[np.uint8],
        data: memoryview,
    ) -> None:
        height, width = fb.shape[:2]
        columns = tile_grid(width, height, tile)[0]
        raw = np.frombuffer(data, np.uint8)
        offset = 0
        for index, mode in zip(indices.tolist(), modes.tolist(), strict=True):
            y0, x0 = (index // columns) * tile, (index % columns) * tile
            target = fb[y0:y0 + tile, x0:x0 + tile]
            size = 3 if mode == Mode.SOLID else 3 * target.shape[0] * target.shape[1]
            if mode == Mode.SOLID:
                target[..., :3] = raw[offset:offset + 3]
            else:
                packed = raw[offset:offset + size].reshape(target.shape[0], target.shape[1], 3)
                target[..., :3] = packed if mode == Mode.RAW else target[..., :3] ^ packed
            target[..., 3] = 0xFF
            offset += size


def _xor_beats_raw(pixels: npt.NDArray[np.uint32], xor: npt.NDArray[np.uint32]) -> bool:
    raw_rows = pixels[::SAMPLE_STEP]
    xor_rows = xor[::SAMPLE_STEP] & COLOUR
    raw_runs = np.count_nonzero(raw_rows[:, 1:] == raw_rows[:, :-1])
    xor_runs = np.count_nonzero(xor_rows[:, 1:] == xor_rows[:, :-1])
    return bool(xor_runs > raw_runs)


class Encoder(frame_format.Encoder):
    kernel_class = NumpyKernel


class Decoder(frame_format.Decoder):
    kernel_class = NumpyKernel
