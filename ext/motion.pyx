# cython: boundscheck=False, wraparound=False, cdivision=True
"""Motion search: find content of the reference that moved (a scroll, a dragged window).

The idea is Xpra's (`motion.pyx`): hash lines, match hashes at candidate offsets. Here both
directions are searched, in a box:

1. the box is the exact extent of the changed pixels, from the dirty tiles and a scan of
   their edges;
2. one hash per row of the box, in the frame and in the reference; every hash that occurs
   exactly once in each votes for the offset between its two rows; the offset with most
   votes wins (ties: the smaller offset, then the negative one);
3. the rows whose hashes agree at that offset, in runs of at least `min_run`, become
   copy-rects as wide as the box;
4. only if rows explain less than half the box: the same with one hash per column, which
   finds horizontal moves; the direction that explains more pixels is kept.

If a box's copies explain less than half of it, the lines are hashed again across its
busiest part only: rows across the columns that changed at least half as often as the
busiest column (columns across the busiest rows), and the copies found are widened while
every moved line still matches. A clock that ticks beside a terminal no longer hides the
terminal's scroll behind a strip of static wallpaper in every row hash.

The box of every change is searched first. If that explains less than half of it and the
changes fall in several groups of touching dirty tiles, each group is searched in its own
box as well, and the answer that explains more pixels wins: a scroll is found while a video
plays elsewhere, and a dragged window whose flat middle did not change stays one piece.

A move that is both horizontal and vertical (a window dragged by hand) matches no whole line,
so when rows and columns both explain less than half a box, an anchor is tried: 32 pixels of
a row, centred on the changed edge nearest the middle of the row's changes. Its source is
looked for in the reference, within the box and 256 pixels each way; from each place it is
found (the first four), a copy grows a line at a time on every side while the moved line
matches, and the largest wins. Up to eight anchors are tried, one in each eighth of the
box's rows from the middle out, until one explains half the box; none after three are
found nowhere.

A frame's row hashes are kept for the next search (`RowHashes`): once a frame is encoded the
reference is that frame, so the reference's rows need not be hashed again over the same
columns. A scroll then reads the reference once fewer.

A line's hash is the sum modulo 2**32 of its pixels' colour words, each XOR a key for its
position: XOR with a key is one-to-one, so two lines that differ in one pixel never collide,
and swapped pixels meet different keys. It needs no multiply, which plain SSE2 lacks for
32-bit lanes, so the compiler vectorises it. A collision elsewhere costs bytes, not
correctness: the copies are applied to the encoder's reference too, and the tiles carry
whatever the copies did not explain. `engine/codec_py.py` does the same with numpy and gets
the same copies.
"""
import numpy as np

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memmove, memset

from tiles cimport load_pixel

cdef uint32_t COLOUR = 0x00FFFFFF
# Column hashes read every fourth row only: a column search reads memory across the whole
# box (on a full-screen change, both 8 MB frames at 1080p), and a column that moved agrees
# in every row anyway. A chance agreement costs bytes, never correctness; the drag workload
# sends the same 706 bytes a frame either way (`ra-bench codec`).
cdef enum:
    COLUMN_ROW_STEP = 4
# An anchor is long enough that text rarely repeats it, short enough to fit inside a small
# window; a drag between two captures rarely moves it further than its reach (at 60 Hz,
# 256 px a frame is a fling across a 1080p screen in eight frames).
cdef enum:
    ANCHOR_WIDTH = 32
    ANCHOR_REACH = 256
    ANCHOR_TRIES = 8
    ANCHOR_SOURCES = 4
    ANCHOR_MISSES = 3
# Before whole lines are hashed, a strip across their middle is: GATE_WIDTH pixels of each
# row, or GATE_ROWS rows (every COLUMN_ROW_STEP-th) of each column. A line that moved whole
# moved its strip too, so unless at least `min_run` strips of the frame (the shortest run a
# copy is made of) are different lines' strips in the reference, nothing can be found and
# neither frame is read whole. Grain, video and light changes never pass; text, with its
# blank strips, always does. Measured on the frames of `ra-bench codec`'s workloads (best
# of 7 per frame): full 0.90 ms a search instead of 3.02, video 0.46 instead of 1.37, and
# scroll, where it always passes, 0.42 instead of 0.35. A strip's hash sums few pixels, so
# one chance match is common (on the full workload, one column pair in every frame): that
# is why one is not enough.
cdef enum:
    GATE_WIDTH = 32
    GATE_ROWS = 32
# Knuth's multiplicative constant: consecutive keys differ in every byte.
cdef uint32_t GOLDEN = 2654435761u


cdef inline bint same_pixel(const uint8_t* p, const uint8_t* q) noexcept nogil:
    """Whether two pixels have the same colour (the padding byte aside)."""
    return ((load_pixel(p) ^ load_pixel(q)) & COLOUR) == 0


cdef inline Py_ssize_t magnitude(Py_ssize_t v) noexcept nogil:
    return -v if v < 0 else v


cdef inline uint32_t key(Py_ssize_t i) noexcept nogil:
    return <uint32_t>(i + 1) * GOLDEN


cdef void hash_lines(const uint8_t* frame, Py_ssize_t stride, Py_ssize_t x0, Py_ssize_t y0,
                     Py_ssize_t x1, Py_ssize_t y1, bint by_rows, uint32_t* keys,
                     uint32_t* out) noexcept nogil:
    """One hash per row (or per column, over every COLUMN_ROW_STEP-th row) of the box;
    `keys` is scratch for max(w, h) keys."""
    cdef Py_ssize_t x, y, n = x1 - x0
    cdef uint32_t h
    cdef const uint8_t* row
    for x in range(max(n, y1 - y0)):
        keys[x] = key(x)
    if not by_rows:
        for x in range(n):
            out[x] = 0
    if by_rows:
        for y in range(y0, y1):
            row = frame + y * stride + 4 * x0
            h = 0
            for x in range(n):
                h += (load_pixel(row + 4 * x) & COLOUR) ^ keys[x]
            out[y - y0] = h
    else:
        y = y0
        while y < y1:
            row = frame + y * stride + 4 * x0
            h = keys[y - y0]
            for x in range(n):
                out[x] += (load_pixel(row + 4 * x) & COLOUR) ^ h
            y += COLUMN_ROW_STEP


cdef struct LineIndex:
    # An open-addressing table of `mask` + 1 slots (at least twice the lines): per distinct
    # hash, the first line that has it; -1 marks a free slot.
    int32_t* table
    Py_ssize_t mask
    # Per line: how many lines share its hash if it is the first with it, else 0.
    int32_t* counts


cdef inline Py_ssize_t find_slot(const LineIndex* index, const uint32_t* hashes,
                                 uint32_t value) noexcept nogil:
    """The slot of `value` in the index of `hashes`, or the free slot where it would go."""
    cdef Py_ssize_t slot = (value * GOLDEN) >> 8 & index.mask
    while index.table[slot] >= 0 and hashes[index.table[slot]] != value:
        slot = (slot + 1) & index.mask
    return slot


cdef void index_lines(LineIndex* index, const uint32_t* hashes, Py_ssize_t n) noexcept nogil:
    """Fill the index from the hashes of `n` lines: a pass over them, no sorting."""
    cdef Py_ssize_t i, slot
    for slot in range(index.mask + 1):
        index.table[slot] = -1
    for i in range(n):
        index.counts[i] = 0
        slot = find_slot(index, hashes, hashes[i])
        if index.table[slot] < 0:
            index.table[slot] = <int32_t>i
        index.counts[index.table[slot]] += 1


cdef inline int32_t line_with(const LineIndex* index, const uint32_t* hashes,
                              uint32_t value) noexcept nogil:
    """The first line whose hash is `value`, or -1."""
    return index.table[find_slot(index, hashes, value)]


cdef bint lines_elsewhere(const uint32_t* hc, const uint32_t* hr, Py_ssize_t n,
                          Py_ssize_t enough, LineIndex* in_ref) noexcept nogil:
    """Whether at least `enough` lines' hashes are hashes of different lines of the
    reference. The look ends as soon as that many are found, which on text is within the
    first few lines."""
    cdef Py_ssize_t i, found = 0
    cdef int32_t j
    index_lines(in_ref, hr, n)
    for i in range(n):
        j = line_with(in_ref, hr, hc[i])
        if j >= 0 and (j != i or in_ref.counts[j] > 1):
            found += 1
            if found >= enough:
                return True
    return False


cdef Py_ssize_t best_offset(const uint32_t* hc, const uint32_t* hr, Py_ssize_t n,
                            LineIndex* in_cur, LineIndex* in_ref,
                            int32_t* votes) noexcept nogil:
    """The offset (reference line − frame line) that most uniquely-hashed lines agree on.

    Returns 0 when no line votes: offset 0 is never a motion. `votes` has 2n zeroed slots.
    """
    cdef Py_ssize_t i, d, best = 0, best_votes = 0
    cdef int32_t j
    index_lines(in_cur, hc, n)
    index_lines(in_ref, hr, n)
    for i in range(n):
        if in_cur.counts[i] != 1:
            continue  # its hash recurs in the frame, or an earlier line has it
        j = line_with(in_ref, hr, hc[i])
        if j >= 0 and j != i and in_ref.counts[j] == 1:
            votes[j - i + n] += 1
    for d in range(-(n - 1), n):
        if votes[d + n] > best_votes or (
                votes[d + n] == best_votes and best_votes > 0
                and (magnitude(d) < magnitude(best)
                     or (magnitude(d) == magnitude(best) and d < best))):
            best_votes = votes[d + n]
            best = d
    return best


cdef Py_ssize_t find_runs(const uint32_t* hc, const uint32_t* hr, Py_ssize_t n, Py_ssize_t d,
                          Py_ssize_t min_run, Py_ssize_t* starts,
                          Py_ssize_t* lengths) noexcept nogil:
    """Runs of lines i with hc[i] == hr[i + d], at least `min_run` long, in order."""
    cdef Py_ssize_t i, start = -1, count = 0
    cdef Py_ssize_t lo = max(0, -d), hi = min(n, n - d)
    for i in range(lo, hi + 1):
        if i < hi and hc[i] == hr[i + d]:
            if start < 0:
                start = i
        elif start >= 0:
            if i - start >= min_run:
                starts[count] = start
                lengths[count] = i - start
                count += 1
            start = -1
    return count


cdef bint next_component(const int32_t[:, ::1] first_diff, int32_t* label,
                         Py_ssize_t* stack, Py_ssize_t* start, Py_ssize_t* tiles,
                         Py_ssize_t* count) noexcept nogil:
    """The next group of dirty tiles that touch (8-connected), in row-major order of their
    first tile: its tile box (x0, y0, x1, y1, ends excluded) and its size."""
    cdef Py_ssize_t nty = first_diff.shape[0], ntx = first_diff.shape[1]
    cdef Py_ssize_t t, top, tx, ty, nx, ny, depth
    for t in range(start[0], nty * ntx):
        if first_diff[t // ntx, t % ntx] >= 0 and label[t] < 0:
            break
    else:
        return False
    start[0] = t + 1
    tiles[0], tiles[1], tiles[2], tiles[3] = t % ntx, t // ntx, t % ntx + 1, t // ntx + 1
    count[0] = 0
    label[t] = 1
    stack[0] = t
    depth = 1
    while depth:
        depth -= 1
        top = stack[depth]
        tx, ty = top % ntx, top // ntx
        count[0] += 1
        tiles[0] = min(tiles[0], tx)
        tiles[1] = min(tiles[1], ty)
        tiles[2] = max(tiles[2], tx + 1)
        tiles[3] = max(tiles[3], ty + 1)
        for ny in range(max(0, ty - 1), min(nty, ty + 2)):
            for nx in range(max(0, tx - 1), min(ntx, tx + 2)):
                if first_diff[ny, nx] >= 0 and label[ny * ntx + nx] < 0:
                    label[ny * ntx + nx] = 1
                    stack[depth] = ny * ntx + nx
                    depth += 1
    return True


cdef bint changed_box(const uint8_t[:, :, ::1] cur, const uint8_t[:, :, ::1] ref,
                      Py_ssize_t tile, const Py_ssize_t* tiles,
                      Py_ssize_t* box) noexcept nogil:
    """The exact box (x0, y0, x1, y1) of the pixels that differ within a tile box; False
    if none do."""
    cdef Py_ssize_t height = cur.shape[0], width = cur.shape[1]
    cdef Py_ssize_t x, y
    cdef Py_ssize_t px0 = tiles[0] * tile, px1 = min(width, tiles[2] * tile)
    cdef Py_ssize_t py0 = tiles[1] * tile, py1 = min(height, tiles[3] * tile)
    cdef Py_ssize_t top = -1, bottom = -1, left = px1, right = px0
    for y in range(py0, py1):
        if memcmp(&cur[y, px0, 0], &ref[y, px0, 0], 4 * (px1 - px0)) != 0:
            top = y
            break
    if top < 0:
        return False  # the map is stale: nothing differs after all
    for y in range(py1 - 1, top - 1, -1):
        if memcmp(&cur[y, px0, 0], &ref[y, px0, 0], 4 * (px1 - px0)) != 0:
            bottom = y + 1
            break
    for y in range(top, bottom):
        for x in range(px0, left):
            if load_pixel(&cur[y, x, 0]) != load_pixel(&ref[y, x, 0]):
                left = x
                break
        for x in range(px1 - 1, right - 1, -1):
            if load_pixel(&cur[y, x, 0]) != load_pixel(&ref[y, x, 0]):
                right = x + 1
                break
    box[0] = left
    box[1] = top
    box[2] = right
    box[3] = bottom
    return True


cdef struct RowCache:
    # Row hashes of one frame over up to `entries` spans of columns: per entry its span
    # (x0, x1; x0 < 0: unused), and per row its hash and whether it is known. `entries` 0:
    # nothing kept.
    Py_ssize_t entries
    Py_ssize_t height
    int64_t* spans
    uint32_t* hashes
    uint8_t* known


cdef Py_ssize_t cached_span(const RowCache* cache, Py_ssize_t x0, Py_ssize_t x1) noexcept nogil:
    """The entry that holds rows over columns x0..x1-1, or -1."""
    cdef Py_ssize_t e
    for e in range(cache.entries):
        if cache.spans[2 * e] == x0 and cache.spans[2 * e + 1] == x1:
            return e
    return -1


cdef void hash_rows_known(const uint8_t* frame, Py_ssize_t stride, const Py_ssize_t* box,
                          const RowCache* cache, uint32_t* keys, uint32_t* out) noexcept nogil:
    """The row hashes of the box, as `hash_lines` makes them, taking those the cache knows
    and hashing the runs of rows it does not."""
    cdef Py_ssize_t e = cached_span(cache, box[0], box[2]), y, start
    cdef const uint32_t* hashes
    cdef const uint8_t* known
    if e < 0:
        hash_lines(frame, stride, box[0], box[1], box[2], box[3], True, keys, out)
        return
    hashes = cache.hashes + e * cache.height
    known = cache.known + e * cache.height
    y = box[1]
    while y < box[3]:
        if known[y]:
            out[y - box[1]] = hashes[y]
            y += 1
            continue
        start = y
        while y < box[3] and not known[y]:
            y += 1
        hash_lines(frame, stride, box[0], start, box[2], y, True, keys, out + start - box[1])


cdef void keep_rows(RowCache* cache, const Py_ssize_t* box, const uint32_t* hashes) noexcept nogil:
    """Remember the row hashes of the box, in the entry for its columns or a free one."""
    cdef Py_ssize_t e = cached_span(cache, box[0], box[2]), height = cache.height
    if e < 0:
        for e in range(cache.entries):
            if cache.spans[2 * e] < 0:
                break
        else:
            return  # every entry holds other columns: this frame searched many spans
        cache.spans[2 * e], cache.spans[2 * e + 1] = box[0], box[2]
        memset(cache.known + e * height, 0, height)
    memcpy(cache.hashes + e * height + box[1], hashes, (box[3] - box[1]) * sizeof(uint32_t))
    memset(cache.known + e * height + box[1], 1, box[3] - box[1])


cdef class RowHashes:
    """Row hashes of a frame of `height` rows, kept from one search to the next.

    `find_motion` fills one with the new frame's rows and reads the reference's from
    another. After the frame is encoded, the reference is that frame, so the one just filled
    describes the next search's reference; if a frame is encoded without a search, the
    reference's must be forgotten.
    """
    cdef readonly Py_ssize_t height
    cdef int64_t[:, ::1] spans
    cdef uint32_t[:, ::1] hashes
    cdef uint8_t[:, ::1] known

    def __init__(self, Py_ssize_t height, Py_ssize_t entries=4):
        if height < 1 or entries < 1:
            raise ValueError("a row hash cache needs rows and entries")
        self.height = height
        self.spans = np.full((entries, 2), -1, np.int64)
        self.hashes = np.zeros((entries, height), np.uint32)
        self.known = np.zeros((entries, height), np.uint8)

    def forget(self):
        """Know nothing: every entry unused."""
        self.spans[:, 0] = -1

    cdef RowCache view(self) noexcept:
        cdef RowCache cache
        cache.entries = self.spans.shape[0]
        cache.height = self.height
        cache.spans = &self.spans[0, 0]
        cache.hashes = &self.hashes[0, 0]
        cache.known = &self.known[0, 0]
        return cache


cdef struct Scratch:
    # The reference's rows as the last frame's search left them, and this frame's rows for
    # the next search (`RowHashes`).
    RowCache ref_rows
    RowCache cur_rows
    uint32_t* keys
    uint32_t* hc
    uint32_t* hr
    LineIndex in_cur
    LineIndex in_ref
    int32_t* votes
    Py_ssize_t* starts
    Py_ssize_t* lengths


cdef bint strips_may_match(const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride,
                           const Py_ssize_t* box, bint by_rows, Py_ssize_t min_run,
                           Scratch* s) noexcept nogil:
    """Whether `min_run` lines of the box may have moved whole, judged on the strip across
    their middle (GATE_WIDTH, GATE_ROWS)."""
    cdef Py_ssize_t strip[4]
    cdef Py_ssize_t w = box[2] - box[0], h = box[3] - box[1], n, sampled
    strip[0], strip[1], strip[2], strip[3] = box[0], box[1], box[2], box[3]
    if by_rows:
        n = h
        if w > GATE_WIDTH:
            strip[0] = box[0] + (w - GATE_WIDTH) // 2
            strip[2] = strip[0] + GATE_WIDTH
    else:
        n = w
        if h > GATE_ROWS:
            # Start on a row the column hashes sample, so that the strip is made of them.
            sampled = (h - GATE_ROWS) // 2 // COLUMN_ROW_STEP * COLUMN_ROW_STEP
            strip[1] = box[1] + sampled
            strip[3] = strip[1] + GATE_ROWS
    hash_lines(cur, stride, strip[0], strip[1], strip[2], strip[3], by_rows, s.keys, s.hc)
    hash_lines(ref, stride, strip[0], strip[1], strip[2], strip[3], by_rows, s.keys, s.hr)
    return lines_elsewhere(s.hc, s.hr, n, min_run, &s.in_ref)


cdef Py_ssize_t search(const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride,
                       const Py_ssize_t* box, bint by_rows, Py_ssize_t min_run, Scratch* s,
                       Py_ssize_t* offset) noexcept nogil:
    """Hash, vote and find runs in one direction; returns the number of runs."""
    cdef Py_ssize_t i, n = (box[3] - box[1]) if by_rows else (box[2] - box[0])
    offset[0] = 0
    if not strips_may_match(cur, ref, stride, box, by_rows, min_run, s):
        return 0
    hash_lines(cur, stride, box[0], box[1], box[2], box[3], by_rows, s.keys, s.hc)
    if by_rows:
        hash_rows_known(ref, stride, box, &s.ref_rows, s.keys, s.hr)
        keep_rows(&s.cur_rows, box, s.hc)
    else:
        hash_lines(ref, stride, box[0], box[1], box[2], box[3], False, s.keys, s.hr)
    for i in range(2 * n):
        s.votes[i] = 0
    offset[0] = best_offset(s.hc, s.hr, n, &s.in_cur, &s.in_ref, s.votes)
    if offset[0] == 0:
        return 0
    return find_runs(s.hc, s.hr, n, offset[0], min_run, s.starts, s.lengths)


cdef void busiest(const uint8_t[:, :, ::1] cur, const uint8_t[:, :, ::1] ref,
                  const Py_ssize_t* box, int32_t* counts, Py_ssize_t* rows_box,
                  Py_ssize_t* columns_box) noexcept nogil:
    """The box narrowed to the columns (for the row search) and to the rows (for the column
    search) that changed at least half as often as the busiest one, counted over every
    COLUMN_ROW_STEP-th row, each standing for the rows up to the next: this runs when a box
    is not explained, often a full-screen change, and the copies found are widened exactly
    afterwards. `counts` is scratch for one count per column and per row of the box."""
    cdef Py_ssize_t x0 = box[0], y0 = box[1], x1 = box[2], y1 = box[3]
    cdef Py_ssize_t w = x1 - x0, x, y
    cdef int32_t* per_column = counts
    cdef int32_t* per_row = counts + w
    cdef int32_t most_column = 0, most_row = 0, changed, differs
    cdef const uint8_t* p
    cdef const uint8_t* q
    for x in range(w):
        per_column[x] = 0
    y = y0
    while y < y1:
        p = &cur[y, x0, 0]
        q = &ref[y, x0, 0]
        changed = 0
        for x in range(w):
            differs = load_pixel(p + 4 * x) != load_pixel(q + 4 * x)
            per_column[x] += differs
            changed += differs
        per_row[(y - y0) // COLUMN_ROW_STEP] = changed
        most_row = max(most_row, changed)
        y += COLUMN_ROW_STEP
    for x in range(w):
        most_column = max(most_column, per_column[x])
    rows_box[0], rows_box[1], rows_box[2], rows_box[3] = x1, y0, x0, y1
    columns_box[0], columns_box[1], columns_box[2], columns_box[3] = x0, y1, x1, y0
    for x in range(w):
        if 2 * per_column[x] >= most_column:
            rows_box[0] = min(rows_box[0], x0 + x)
            rows_box[2] = x0 + x + 1
    for y in range(0, (y1 - y0 + COLUMN_ROW_STEP - 1) // COLUMN_ROW_STEP):
        if 2 * per_row[y] >= most_row:
            columns_box[1] = min(columns_box[1], y0 + y * COLUMN_ROW_STEP)
            columns_box[3] = min(y1, y0 + (y + 1) * COLUMN_ROW_STEP)


cdef bint moved_along(const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride,
                      Py_ssize_t at, bint by_rows, Py_ssize_t base, Py_ssize_t offset,
                      const Py_ssize_t* starts, const Py_ssize_t* lengths,
                      Py_ssize_t runs) noexcept nogil:
    """Whether the pixels at `at` across the motion moved by `offset` on every line of the
    runs (lines counted from `base`)."""
    cdef Py_ssize_t i, j
    cdef const uint8_t* p
    cdef const uint8_t* q
    for i in range(runs):
        for j in range(base + starts[i], base + starts[i] + lengths[i]):
            if by_rows:
                p = cur + j * stride + 4 * at
                q = ref + (j + offset) * stride + 4 * at
            else:
                p = cur + at * stride + 4 * j
                q = ref + at * stride + 4 * (j + offset)
            if not same_pixel(p, q):
                return False
    return True


cdef void widen(const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride,
                const Py_ssize_t* inner, const Py_ssize_t* outer, bint by_rows,
                Py_ssize_t offset, const Py_ssize_t* starts, const Py_ssize_t* lengths,
                Py_ssize_t runs, Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """The extent across the motion of copies found in `inner`, grown within `outer` while
    every moved line still matches: the busiest columns find a scroll, the quiet ones at its
    edges still belong to it."""
    cdef Py_ssize_t axis = 0 if by_rows else 1
    cdef Py_ssize_t first = outer[axis], last = outer[axis + 2], base = inner[1 - axis]
    lo[0], hi[0] = inner[axis], inner[axis + 2]
    if not runs:
        return
    while lo[0] > first and moved_along(cur, ref, stride, lo[0] - 1, by_rows, base, offset,
                                        starts, lengths, runs):
        lo[0] -= 1
    while hi[0] < last and moved_along(cur, ref, stride, hi[0], by_rows, base, offset,
                                       starts, lengths, runs):
        hi[0] += 1


cdef Py_ssize_t copies_in_box(const uint8_t[:, :, ::1] cur, const uint8_t[:, :, ::1] ref,
                              const Py_ssize_t* box, const Py_ssize_t* rows_box,
                              const Py_ssize_t* columns_box, Py_ssize_t min_run, Scratch* s,
                              list copies) except -1:
    """Append the copies found in one box, in the order to apply them; return the pixels
    they explain. Rows are hashed across `rows_box`, columns across `columns_box`, and
    copies widened to as much of `box` as moved. Rows first; columns only if rows explain
    less than half the box."""
    cdef Py_ssize_t stride = cur.shape[1] * 4, runs, offset = 0, pixels = 0, i, k
    cdef Py_ssize_t x0 = box[0], y0 = box[1], x1 = box[2], y1 = box[3]
    cdef Py_ssize_t column_runs = 0, column_offset = 0, column_pixels = 0
    cdef Py_ssize_t left, right, top = y0, bottom = y1
    with nogil:
        runs = search(&cur[0, 0, 0], &ref[0, 0, 0], stride, rows_box, True, min_run, s,
                      &offset)
        widen(&cur[0, 0, 0], &ref[0, 0, 0], stride, rows_box, box, True, offset, s.starts,
              s.lengths, runs, &left, &right)
        for i in range(runs):
            pixels += s.lengths[i] * (right - left)
    if runs:
        rows = [(s.starts[i], s.lengths[i]) for i in range(runs)]
    if 2 * pixels < (x1 - x0) * (y1 - y0):
        with nogil:
            column_runs = search(&cur[0, 0, 0], &ref[0, 0, 0], stride, columns_box, False,
                                 min_run, s, &column_offset)
            widen(&cur[0, 0, 0], &ref[0, 0, 0], stride, columns_box, box, False,
                  column_offset, s.starts, s.lengths, column_runs, &top, &bottom)
            for i in range(column_runs):
                column_pixels += s.lengths[i] * (bottom - top)
    # Apply in the order that never reads what an earlier copy wrote.
    if column_pixels > pixels:
        for i in range(column_runs):
            k = i if column_offset > 0 else column_runs - 1 - i
            copies.append((x0 + s.starts[k] + column_offset, top, s.lengths[k], bottom - top,
                           x0 + s.starts[k], top))
        return column_pixels
    for i in range(runs):
        k = i if offset > 0 else runs - 1 - i
        copies.append((left, y0 + rows[k][0] + offset, right - left, rows[k][1], left,
                       y0 + rows[k][0]))
    return pixels


cdef bint line_moved(const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride, Py_ssize_t x,
                     Py_ssize_t y, Py_ssize_t n, bint along_row, Py_ssize_t dx,
                     Py_ssize_t dy) noexcept nogil:
    """Whether the `n` pixels from (x, y), along a row or down a column, are the reference's
    at (x + dx, y + dy)."""
    cdef Py_ssize_t i
    cdef const uint8_t* p = cur + y * stride + 4 * x
    cdef const uint8_t* q = ref + (y + dy) * stride + 4 * (x + dx)
    cdef Py_ssize_t step = 4 if along_row else stride
    for i in range(n):
        if not same_pixel(p + i * step, q + i * step):
            return False
    return True


cdef inline bint may_start_anchor(const uint8_t* row, Py_ssize_t lo, Py_ssize_t hi,
                                  uint32_t first, uint32_t middle) noexcept nogil:
    """Whether an anchor whose first and middle pixels are `first` and `middle` may start in
    `row` at some x in lo..hi-1. Counting, not stopping at the first hit, lets the compiler
    vectorise it; most rows of new content (a video) hold neither pixel where it must be,
    and are then not looked at pixel by pixel."""
    cdef Py_ssize_t x
    cdef uint32_t hits = 0
    for x in range(lo, hi):
        hits += (((load_pixel(row + 4 * x) ^ first) & COLOUR) == 0) & (
            ((load_pixel(row + 4 * x + 4 * (ANCHOR_WIDTH // 2)) ^ middle) & COLOUR) == 0)
    return hits != 0


cdef int anchor_sources(const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride,
                        const Py_ssize_t* box, Py_ssize_t ax, Py_ssize_t ay, Py_ssize_t* dx,
                        Py_ssize_t* dy) noexcept nogil:
    """Where in the box, within ANCHOR_REACH and not in place, the reference holds the
    anchor's pixels: the first ANCHOR_SOURCES offsets in row-major order into (dx, dy); how
    many. What moved came from inside the box: its old place changed too."""
    cdef Py_ssize_t sx, sy
    cdef Py_ssize_t lo = max(box[0], ax - ANCHOR_REACH)
    cdef Py_ssize_t hi = min(box[2] - ANCHOR_WIDTH, ax + ANCHOR_REACH) + 1
    cdef int found = 0
    cdef const uint8_t* anchor = cur + ay * stride + 4 * ax
    cdef uint32_t first = load_pixel(anchor) & COLOUR
    cdef uint32_t middle = load_pixel(anchor + 4 * (ANCHOR_WIDTH // 2)) & COLOUR
    cdef const uint8_t* row
    for sy in range(max(box[1], ay - ANCHOR_REACH), min(box[3], ay + ANCHOR_REACH + 1)):
        row = ref + sy * stride
        if not may_start_anchor(row, lo, hi, first, middle):
            continue
        for sx in range(lo, hi):
            if (load_pixel(row + 4 * sx) & COLOUR) != first or (sx == ax and sy == ay):
                continue
            if line_moved(cur, ref, stride, ax, ay, ANCHOR_WIDTH, True, sx - ax, sy - ay):
                dx[found], dy[found] = sx - ax, sy - ay
                found += 1
                if found == ANCHOR_SOURCES:
                    return found
    return found


cdef Py_ssize_t grow(const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride,
                     Py_ssize_t width, Py_ssize_t height, const Py_ssize_t* box,
                     Py_ssize_t dx, Py_ssize_t dy, Py_ssize_t* rect) noexcept nogil:
    """Grow `rect` (x0, y0, x1, y1) a line at a time on each side in turn, within the box
    and with its source within the frame, while the new line moved by (dx, dy); its area.
    Growing every side together, not one side to the end first, keeps a narrow anchor from
    running on through content that matches only along its own few columns."""
    # Per side of `rect` (x0, y0, x1, y1): how far it may go.
    cdef Py_ssize_t limits[4]
    limits[0], limits[1] = max(box[0], -dx), max(box[1], -dy)
    limits[2], limits[3] = min(box[2], width - dx), min(box[3], height - dy)
    cdef Py_ssize_t line
    cdef int turn, side
    cdef int[4] sides = [1, 3, 0, 2]  # top, bottom, left, right
    cdef bint grew = True, row, outward
    while grew:
        grew = False
        for turn in range(4):
            side = sides[turn]
            row = side % 2 == 1
            outward = side >= 2  # x1 and y1 grow up, x0 and y0 down
            if (rect[side] < limits[side]) if outward else (rect[side] > limits[side]):
                line = rect[side] if outward else rect[side] - 1
                if line_moved(cur, ref, stride, rect[0] if row else line,
                              line if row else rect[1],
                              (rect[2] - rect[0]) if row else (rect[3] - rect[1]), row, dx, dy):
                    rect[side] += 1 if outward else -1
                    grew = True
    return (rect[2] - rect[0]) * (rect[3] - rect[1])


cdef inline bint changed_edge(const uint8_t* row, const uint8_t* before,
                              Py_ssize_t x) noexcept nogil:
    """Whether pixel x changed and is unlike the next."""
    return not same_pixel(row + 4 * x, before + 4 * x) and not same_pixel(row + 4 * x,
                                                                          row + 4 * x + 4)


cdef Py_ssize_t anchor_column(const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride,
                              const Py_ssize_t* box, Py_ssize_t y) noexcept nogil:
    """The column nearest the middle of row `y`'s changed pixels (on a tie, the one at or
    right of it) where the row changed and has an edge (a pixel unlike the next); -1 if
    none. Windows are flat in most places, and a flat anchor is found everywhere; the
    middle keeps the anchor off the strips a move uncovers at the ends, and off a small
    change elsewhere on the row."""
    cdef Py_ssize_t x, d, first = -1, last = -1, middle
    cdef const uint8_t* row = cur + y * stride
    cdef const uint8_t* before = ref + y * stride
    for x in range(box[0], box[2]):
        if not same_pixel(row + 4 * x, before + 4 * x):
            first = x
            break
    if first < 0:
        return -1
    for x in range(box[2] - 1, first - 1, -1):
        if not same_pixel(row + 4 * x, before + 4 * x):
            last = x
            break
    middle = (first + last) // 2
    for d in range(last - first + 1):
        if middle + d < last and changed_edge(row, before, middle + d):
            return middle + d
        if middle - d - 1 >= first and changed_edge(row, before, middle - d - 1):
            return middle - d - 1
    return -1


cdef inline Py_ssize_t middle_out(Py_ssize_t k) noexcept nogil:
    """The k-th band of ANCHOR_TRIES to try: the middle two, then outwards."""
    return ANCHOR_TRIES // 2 - 1 - k // 2 if k % 2 == 0 else ANCHOR_TRIES // 2 + k // 2


cdef Py_ssize_t anchor_motion(const uint8_t[:, :, ::1] cur, const uint8_t[:, :, ::1] ref,
                              const Py_ssize_t* box, Py_ssize_t min_run,
                              list copies) except -1:
    """Append the largest copy grown from an anchor, at least `min_run` rows tall; return
    the pixels it explains (0: none). The search stops at a copy that explains half the box.

    The box is cut into ANCHOR_TRIES bands of rows, tried from the middle out, away from
    the strips a move uncovers at the edges; each band's anchor is on its first row with a
    changed edge, centred on the edge nearest the middle of the row's changes. Text repeats
    its letters, so an anchor may be found in several places: the copy grows from each of
    the first ANCHOR_SOURCES and the largest is kept; a wrong source stops growing within a
    line or two. A move leaves two strips that are found nowhere (what it uncovered above
    or below); a third anchor found nowhere means new content (a video), not a move, and
    the search stops there.
    """
    cdef Py_ssize_t height = cur.shape[0], width = cur.shape[1], stride = width * 4
    cdef Py_ssize_t h = box[3] - box[1], k, band, i, ax, ay, pixels = 0, area, misses = 0
    cdef Py_ssize_t dx[ANCHOR_SOURCES]
    cdef Py_ssize_t dy[ANCHOR_SOURCES]
    cdef Py_ssize_t rect[4]
    cdef Py_ssize_t best[6]
    cdef int sources
    cdef const uint8_t* c = &cur[0, 0, 0]
    cdef const uint8_t* r = &ref[0, 0, 0]
    if box[2] - box[0] < ANCHOR_WIDTH:
        return 0
    with nogil:
        for k in range(ANCHOR_TRIES):
            band = middle_out(k)
            ax = -1
            for ay in range(box[1] + band * h // ANCHOR_TRIES,
                            box[1] + (band + 1) * h // ANCHOR_TRIES):
                ax = anchor_column(c, r, stride, box, ay)
                if ax >= 0:
                    break
            if ax < 0:
                continue
            ax = min(max(ax - ANCHOR_WIDTH // 2, box[0]), box[2] - ANCHOR_WIDTH)
            sources = anchor_sources(c, r, stride, box, ax, ay, dx, dy)
            if sources == 0:
                misses += 1
                if misses == ANCHOR_MISSES:
                    break
            for i in range(sources):
                rect[0], rect[1], rect[2], rect[3] = ax, ay, ax + ANCHOR_WIDTH, ay + 1
                area = grow(c, r, stride, width, height, box, dx[i], dy[i], rect)
                if rect[3] - rect[1] >= min_run and area > pixels:
                    pixels = area
                    best[0], best[1], best[2] = rect[0] + dx[i], rect[1] + dy[i], rect[2] - rect[0]
                    best[3], best[4], best[5] = rect[3] - rect[1], rect[0], rect[1]
            if 2 * pixels >= (box[2] - box[0]) * h:
                break
    if pixels:
        copies.append((best[0], best[1], best[2], best[3], best[4], best[5]))
    return pixels


cdef Py_ssize_t box_motion(const uint8_t[:, :, ::1] cur, const uint8_t[:, :, ::1] ref,
                           const Py_ssize_t* box, Py_ssize_t min_run, Scratch* s,
                           list copies) except -1:
    """Append the copies found in one box; return the pixels they explain.

    If they explain less than half of it, the lines are hashed again across the busiest
    part of the box only, and the answer that explains more wins: a clock that ticks beside
    a terminal widens the box by wallpaper that did not scroll, and rows that include it
    match at no offset (measured on Xvfb: 100 KB a frame instead of 3 KB). If lines still
    explain less than half, an anchor is tried, for a move in both directions.
    """
    cdef Py_ssize_t explained, pixels
    cdef Py_ssize_t rows_box[4]
    cdef Py_ssize_t columns_box[4]
    found = []
    explained = copies_in_box(cur, ref, box, box, box, min_run, s, found)
    if 2 * explained < (box[2] - box[0]) * (box[3] - box[1]):
        with nogil:
            busiest(cur, ref, box, s.votes, rows_box, columns_box)
        if (rows_box[0] != box[0] or rows_box[2] != box[2] or columns_box[1] != box[1]
                or columns_box[3] != box[3]):
            narrowed = []
            pixels = copies_in_box(cur, ref, box, rows_box, columns_box, min_run, s, narrowed)
            if pixels > explained:
                found, explained = narrowed, pixels
    if 2 * explained < (box[2] - box[0]) * (box[3] - box[1]):
        anchored = []
        pixels = anchor_motion(cur, ref, box, min_run, anchored)
        if pixels > explained:
            found, explained = anchored, pixels
    copies += found
    return explained


def find_motion(const uint8_t[:, :, ::1] cur, const uint8_t[:, :, ::1] ref, Py_ssize_t tile,
                const int32_t[:, ::1] first_diff, Py_ssize_t min_tiles, Py_ssize_t min_run,
                RowHashes ref_rows=None, RowHashes cur_rows=None):
    """Copy-rects (n, 6) int32 of (src_x, src_y, width, height, dst_x, dst_y), in the order
    to apply them, that turn `ref` into `cur` where content moved; (0, 6) when none.

    The box of every change is searched first. If that explains less than half of it and
    the changes fall in several groups of touching dirty tiles (at least `min_tiles` each),
    each group is searched on its own, so that a scroll is found while a clock ticks or a
    video plays elsewhere; the answer that explains more pixels wins.

    `ref_rows`, if given, holds row hashes of `ref` that need not be made again; `cur_rows`
    is filled with the rows of `cur` this search hashed (`RowHashes`). Either must be as tall
    as the frames. The copies are the same with or without them.
    """
    cdef Py_ssize_t height = cur.shape[0], width = cur.shape[1]
    if ref.shape[0] != height or ref.shape[1] != width or cur.shape[2] != 4 or ref.shape[2] != 4:
        raise ValueError("frame and reference must both be (H, W, 4) and the same size")
    if tile < 1 or min_run < 1:
        raise ValueError("tile size and minimum run must be positive")
    cdef Py_ssize_t nty = first_diff.shape[0], ntx = first_diff.shape[1]
    if nty != (height + tile - 1) // tile or ntx != (width + tile - 1) // tile:
        raise ValueError("the tile map does not fit the frame")
    cdef Py_ssize_t box[4]
    cdef Py_ssize_t tiles[4]
    cdef Py_ssize_t whole[4]
    cdef Py_ssize_t side = max(height, width), i, start = 0, group = 0
    cdef Py_ssize_t explained = 0, area, group_explained = 0
    cdef Scratch s
    s.ref_rows.entries = s.cur_rows.entries = 0
    for rows in (ref_rows, cur_rows):
        if rows is not None and rows.height != height:
            raise ValueError(f"row hashes of {rows.height} rows for a frame of {height}")
    if ref_rows is not None:
        s.ref_rows = ref_rows.view()
    if cur_rows is not None:
        cur_rows.forget()
        s.cur_rows = cur_rows.view()
    s.keys = <uint32_t*>malloc(side * sizeof(uint32_t))
    s.hc = <uint32_t*>malloc(side * sizeof(uint32_t))
    s.hr = <uint32_t*>malloc(side * sizeof(uint32_t))
    s.votes = <int32_t*>malloc(2 * side * sizeof(int32_t))
    cdef Py_ssize_t mask = 1
    while mask + 1 < 2 * side:
        mask = 2 * mask + 1
    # One block for both line indexes: two tables, then two count arrays.
    cdef int32_t* indexes = <int32_t*>malloc(2 * (mask + 1 + side) * sizeof(int32_t))
    s.starts = <Py_ssize_t*>malloc(side * sizeof(Py_ssize_t))
    s.lengths = <Py_ssize_t*>malloc(side * sizeof(Py_ssize_t))
    cdef int32_t* label = <int32_t*>malloc(nty * ntx * sizeof(int32_t))
    cdef Py_ssize_t* stack = <Py_ssize_t*>malloc(nty * ntx * sizeof(Py_ssize_t))
    copies = []
    try:
        if not (s.keys and s.hc and s.hr and s.votes and indexes and s.starts
                and s.lengths and label and stack):
            raise MemoryError()
        s.in_cur.mask = s.in_ref.mask = mask
        s.in_cur.table, s.in_ref.table = indexes, indexes + mask + 1
        s.in_cur.counts, s.in_ref.counts = indexes + 2 * (mask + 1), indexes + 2 * (mask + 1) + side
        groups = []
        whole[0], whole[1], whole[2], whole[3] = ntx, nty, 0, 0
        for i in range(nty * ntx):
            label[i] = -1
        while next_component(first_diff, label, stack, &start, tiles, &group):
            whole[0], whole[1] = min(whole[0], tiles[0]), min(whole[1], tiles[1])
            whole[2], whole[3] = max(whole[2], tiles[2]), max(whole[3], tiles[3])
            if group >= min_tiles:
                groups.append((tiles[0], tiles[1], tiles[2], tiles[3]))
        if not groups or not changed_box(cur, ref, tile, whole, box):
            return np.empty((0, 6), np.int32)
        explained = box_motion(cur, ref, box, min_run, &s, copies)
        area = (box[2] - box[0]) * (box[3] - box[1])
        if 2 * explained >= area or len(groups) < 2:
            return np.array(copies, np.int32).reshape(-1, 6)
        group_copies = []
        for tiles[0], tiles[1], tiles[2], tiles[3] in groups:
            if changed_box(cur, ref, tile, tiles, box):
                group_explained += box_motion(cur, ref, box, min_run, &s, group_copies)
        if group_explained > explained:
            copies = group_copies
        return np.array(copies, np.int32).reshape(-1, 6)
    finally:
        free(s.keys)
        free(s.hc)
        free(s.hr)
        free(s.votes)
        free(indexes)
        free(s.starts)
        free(s.lengths)
        free(label)
        free(stack)


def line_hashes(const uint8_t[:, :, ::1] frame, Py_ssize_t x0, Py_ssize_t y0, Py_ssize_t x1,
                Py_ssize_t y1, bint by_rows):
    """The row (or column) hashes of a box, as the search computes them; for the tests."""
    if not (0 <= x0 < x1 <= frame.shape[1] and 0 <= y0 < y1 <= frame.shape[0]):
        raise ValueError("box is empty or outside the frame")
    cdef Py_ssize_t n = (y1 - y0) if by_rows else (x1 - x0)
    out = np.empty(n, np.uint32)
    cdef uint32_t[::1] hashes = out
    cdef uint32_t* w = <uint32_t*>malloc(max(x1 - x0, y1 - y0) * sizeof(uint32_t))
    if w == NULL:
        raise MemoryError()
    try:
        with nogil:
            hash_lines(&frame[0, 0, 0], frame.shape[1] * 4, x0, y0, x1, y1, by_rows, w,
                       &hashes[0])
    finally:
        free(w)
    return out


def apply_copies(uint8_t[:, :, ::1] fb, const int32_t[:, ::1] copies):
    """Apply copy-rects in order, each as if through a temporary (memmove semantics).

    Rows are visited bottom-up when the destination lies below the source, so a copy that
    overlaps itself reads each row before it is overwritten; memmove does the same within
    a row.
    """
    cdef Py_ssize_t height = fb.shape[0], width = fb.shape[1]
    if fb.shape[2] != 4 or copies.shape[1] != 6:
        raise ValueError("framebuffer must be (H, W, 4) and copies (n, 6)")
    cdef Py_ssize_t n, i, sx, sy, cw, ch, dx, dy
    for n in range(copies.shape[0]):
        sx, sy, cw, ch, dx, dy = (copies[n, 0], copies[n, 1], copies[n, 2], copies[n, 3],
                                  copies[n, 4], copies[n, 5])
        if not (cw > 0 and ch > 0 and sx >= 0 and sy >= 0 and dx >= 0 and dy >= 0
                and sx + cw <= width and dx + cw <= width
                and sy + ch <= height and dy + ch <= height):
            raise ValueError(f"copy {n} leaves the {width}x{height} frame")
    with nogil:
        for n in range(copies.shape[0]):
            sx, sy, cw, ch, dx, dy = (copies[n, 0], copies[n, 1], copies[n, 2], copies[n, 3],
                                      copies[n, 4], copies[n, 5])
            if dy > sy:
                for i in range(ch - 1, -1, -1):
                    memmove(&fb[dy + i, dx, 0], &fb[sy + i, sx, 0], 4 * cw)
            else:
                for i in range(ch):
                    memmove(&fb[dy + i, dx, 0], &fb[sy + i, sx, 0], 4 * cw)
