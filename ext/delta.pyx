# cython: boundscheck=False, wraparound=False, cdivision=True
"""Per-tile encode and decode of the frame format described in `engine/frame_format.py`.

Pixels are handled as little-endian 32-bit words (B, G, R, X); the padding byte X is never
sent. Writing a packed pixel stores a whole word and advances by three bytes, so every
output buffer carries slack for the last store (`DATA_SLACK`). The decoder is handed input
that `frame_format` has validated, and checks every index and length again here anyway:
this is the code that writes into memory.
"""
from libc.stdint cimport int32_t, uint8_t, uint32_t
from libc.string cimport memcpy

from tiles cimport load_pixel, store_pixel

# Wire values of the tile modes (frame_format.Mode).
cdef enum:
    MODE_SOLID = 0
    MODE_XOR = 1
    MODE_RAW = 2

cdef uint32_t COLOUR = 0x00FFFFFF
cdef uint32_t OPAQUE = 0xFF000000
# Rows sampled when choosing XOR against raw: every fourth row keeps the choice cheap on
# full-screen changes and is as good as all rows on text and widgets.
cdef enum:
    SAMPLE_STEP = 4

DATA_SLACK = 4


cdef inline bint tile_is_solid(const uint8_t* cur, Py_ssize_t stride, Py_ssize_t tw,
                               Py_ssize_t th) noexcept nogil:
    cdef uint32_t first = load_pixel(cur) & COLOUR
    cdef Py_ssize_t x, y
    cdef const uint8_t* row
    for y in range(th):
        row = cur + y * stride
        for x in range(tw):
            if (load_pixel(row + 4 * x) & COLOUR) != first:
                return False
    return True


cdef inline bint xor_beats_raw(const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride,
                               Py_ssize_t tw, Py_ssize_t th) noexcept nogil:
    """Guess which mode compresses better: count pixels that repeat their left neighbour.

    XOR wins on in-place edits (unchanged pixels become runs of zero); raw wins where content
    moved, since the XOR of two shifted images is noisier than either.
    """
    cdef Py_ssize_t x, y
    cdef Py_ssize_t raw_runs = 0, xor_runs = 0
    cdef uint32_t c0, c1, r0, r1
    cdef const uint8_t* crow
    cdef const uint8_t* rrow
    y = 0
    while y < th:
        crow = cur + y * stride
        rrow = ref + y * stride
        # Each pixel is loaded afresh rather than carried over, so that the compiler can
        # vectorise the loop.
        for x in range(1, tw):
            c0 = load_pixel(crow + 4 * x - 4)
            c1 = load_pixel(crow + 4 * x)
            r0 = load_pixel(rrow + 4 * x - 4)
            r1 = load_pixel(rrow + 4 * x)
            raw_runs += ((c1 ^ c0) & COLOUR) == 0
            xor_runs += ((c1 ^ r1 ^ c0 ^ r0) & COLOUR) == 0
        y += SAMPLE_STEP
    return xor_runs > raw_runs


cdef inline uint8_t* pack_row(uint8_t* out, const uint8_t* crow, const uint8_t* rrow,
                              Py_ssize_t tw, bint use_xor) noexcept nogil:
    """Pack one row of pixels to 3 bytes each: four pixels become three whole words."""
    cdef Py_ssize_t x = 0
    cdef uint32_t p0, p1, p2, p3
    while x + 4 <= tw:
        p0 = load_pixel(crow + 4 * x)
        p1 = load_pixel(crow + 4 * x + 4)
        p2 = load_pixel(crow + 4 * x + 8)
        p3 = load_pixel(crow + 4 * x + 12)
        if use_xor:
            p0 ^= load_pixel(rrow + 4 * x)
            p1 ^= load_pixel(rrow + 4 * x + 4)
            p2 ^= load_pixel(rrow + 4 * x + 8)
            p3 ^= load_pixel(rrow + 4 * x + 12)
        store_pixel(out, (p0 & COLOUR) | (p1 << 24))
        store_pixel(out + 4, ((p1 >> 8) & 0xFFFF) | (p2 << 16))
        store_pixel(out + 8, ((p2 >> 16) & 0xFF) | (p3 << 8))
        out += 12
        x += 4
    while x < tw:
        p0 = load_pixel(crow + 4 * x)
        if use_xor:
            p0 ^= load_pixel(rrow + 4 * x)
        store_pixel(out, p0)  # its fourth byte is overwritten next, or is slack
        out += 3
        x += 1
    return out


cdef inline uint8_t* pack_tile(uint8_t* out, const uint8_t* cur, const uint8_t* ref,
                               Py_ssize_t stride, Py_ssize_t tw, Py_ssize_t th,
                               bint use_xor) noexcept nogil:
    cdef Py_ssize_t y
    for y in range(th):
        out = pack_row(out, cur + y * stride, ref + y * stride, tw, use_xor)
    return out


def encode_tiles(const uint8_t[:, :, ::1] cur, uint8_t[:, :, ::1] ref, Py_ssize_t tile,
                 bint keyframe, const int32_t[:, ::1] first_diff, uint32_t[::1] indices,
                 uint8_t[::1] modes, uint8_t[::1] data):
    """Encode the tiles that `first_diff` marks (every tile on a keyframe); bring `ref` up.

    `first_diff` is the map `tiles.scan` filled: per tile the first row that differs, -1 for
    none. For each tile to send: choose solid, XOR or raw, pack it, and copy its changed rows
    into the reference while they are in cache. A keyframe never uses XOR.
    Returns (tile count, data bytes used).
    """
    cdef Py_ssize_t height = cur.shape[0], width = cur.shape[1]
    if ref.shape[0] != height or ref.shape[1] != width or cur.shape[2] != 4 or ref.shape[2] != 4:
        raise ValueError("frame and reference must both be (H, W, 4) and the same size")
    if height < 1 or width < 1 or tile < 1:
        raise ValueError("empty frame or tile")
    cdef Py_ssize_t nty = (height + tile - 1) // tile, ntx = (width + tile - 1) // tile
    if first_diff.shape[0] != nty or first_diff.shape[1] != ntx:
        raise ValueError("the tile map does not fit the frame")
    if indices.shape[0] < nty * ntx or modes.shape[0] < nty * ntx:
        raise ValueError("index and mode buffers are smaller than the tile count")
    if data.shape[0] < height * width * 3 + DATA_SLACK:
        raise ValueError("data buffer is smaller than one packed frame")

    cdef Py_ssize_t stride = width * 4
    cdef Py_ssize_t ty, tx, y, y0, x0, tw, th, first, count = 0
    cdef uint8_t* out = &data[0]
    cdef const uint8_t* c
    cdef uint8_t* r
    cdef uint8_t mode
    with nogil:
        for ty in range(nty):
            y0 = ty * tile
            th = min(tile, height - y0)
            for tx in range(ntx):
                first = 0 if keyframe else first_diff[ty, tx]
                if first < 0:
                    continue
                if first >= th:
                    first = 0  # not a map `scan` made: refresh the whole tile
                x0 = tx * tile
                tw = min(tile, width - x0)
                c = &cur[y0, x0, 0]
                r = &ref[y0, x0, 0]
                if tile_is_solid(c, stride, tw, th):
                    mode = MODE_SOLID
                    store_pixel(out, load_pixel(c))
                    out += 3
                else:
                    mode = MODE_RAW
                    if not keyframe and xor_beats_raw(c, r, stride, tw, th):
                        mode = MODE_XOR
                    out = pack_tile(out, c, r, stride, tw, th, mode == MODE_XOR)
                indices[count] = <uint32_t>(ty * ntx + tx)
                modes[count] = mode
                count += 1
                for y in range(first, th):
                    memcpy(r + y * stride, c + y * stride, tw * 4)
    return count, out - &data[0]


cdef inline uint32_t read_packed(const uint8_t* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)


def apply_tiles(uint8_t[:, :, ::1] fb, Py_ssize_t tile, const uint32_t[::1] indices,
                const uint8_t[::1] modes, const uint8_t[::1] data):
    """Write validated tiles into the framebuffer `fb` (H, W, 4); padding bytes become 0xFF."""
    cdef Py_ssize_t height = fb.shape[0], width = fb.shape[1]
    if fb.shape[2] != 4 or height < 1 or width < 1 or tile < 1:
        raise ValueError("framebuffer must be (H, W, 4) and not empty")
    if modes.shape[0] != indices.shape[0]:
        raise ValueError("tile indices and modes differ in length")
    cdef Py_ssize_t ntx = (width + tile - 1) // tile
    cdef Py_ssize_t ntiles = ntx * ((height + tile - 1) // tile)
    cdef Py_ssize_t stride = width * 4
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t i, x, y, x0, y0, tw, th, need, last
    cdef Py_ssize_t off = 0
    cdef uint32_t value
    cdef uint8_t mode
    cdef uint8_t* row
    cdef const uint8_t* src
    cdef const uint8_t* base = &data[0] if size > 0 else NULL
    cdef bint bad = False
    with nogil:
        for i in range(indices.shape[0]):
            if indices[i] >= ntiles:
                bad = True
                break
            x0 = (indices[i] % ntx) * tile
            y0 = (indices[i] // ntx) * tile
            tw = min(tile, width - x0)
            th = min(tile, height - y0)
            mode = modes[i]
            need = 3 if mode == MODE_SOLID else 3 * tw * th
            if mode > MODE_RAW or off + need > size:
                bad = True
                break
            src = base + off
            off += need
            if mode == MODE_SOLID:
                value = read_packed(src) | OPAQUE
                for y in range(th):
                    row = &fb[y0 + y, x0, 0]
                    for x in range(tw):
                        store_pixel(row + 4 * x, value)
                continue
            last = tw - 1
            for y in range(th):
                row = &fb[y0 + y, x0, 0]
                # Whole-word loads read one byte past the pixel: safe except for a row's
                # last pixel, which may end the buffer, so that one is read bytewise.
                if mode == MODE_XOR:
                    for x in range(last):
                        store_pixel(row + 4 * x, load_pixel(row + 4 * x) ^ (load_pixel(src + 3 * x) & COLOUR))
                    store_pixel(row + 4 * last, load_pixel(row + 4 * last) ^ read_packed(src + 3 * last))
                else:
                    for x in range(last):
                        store_pixel(row + 4 * x, (load_pixel(src + 3 * x) & COLOUR) | OPAQUE)
                    store_pixel(row + 4 * last, read_packed(src + 3 * last) | OPAQUE)
                src += 3 * tw
    if bad:
        raise ValueError(f"tile {i} is out of range, has an unknown mode or overruns the data")
    if off != size:
        raise ValueError(f"tile data is {size} bytes, the tiles use {off}")
