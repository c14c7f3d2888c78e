# Change detection shared by the native modules: declarations and the inline scan.
from libc.stdint cimport int32_t, uint8_t, uint32_t
from libc.string cimport memcmp, memcpy


cdef inline uint32_t load_pixel(const uint8_t* p) noexcept nogil:
    """One BGRX pixel as a little-endian word: B in bits 0-7, G 8-15, R 16-23."""
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline void store_pixel(uint8_t* p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)


cdef inline Py_ssize_t scan_band(
    const uint8_t* cur, const uint8_t* ref, Py_ssize_t stride, Py_ssize_t width,
    Py_ssize_t rows, Py_ssize_t tile, Py_ssize_t tx0, Py_ssize_t tx1, int32_t* first_diff,
) noexcept nogil:
    """For one band of tile rows, record per tile column the first row that differs (-1: none).

    Only tile columns tx0..tx1-1 are scanned and written. `cur` and `ref` point at the band's
    first row, column 0. Each row's span is compared whole first: on a static screen that is
    one memcmp per row, which is the physical limit. Only a row that differs is split by tile,
    and a tile stops being compared at its first differing row (TigerVNC's
    ComparingUpdateTracker does the same). Returns the number of dirty tiles in the span.
    """
    cdef Py_ssize_t tile_bytes = tile * 4
    cdef Py_ssize_t x_lo = tx0 * tile_bytes
    cdef Py_ssize_t x_hi = min(width, tx1 * tile) * 4
    cdef Py_ssize_t y, tx, x0, nbytes
    cdef Py_ssize_t dirty = 0
    cdef const uint8_t* c
    cdef const uint8_t* r
    for tx in range(tx0, tx1):
        first_diff[tx] = -1
    for y in range(rows):
        c = cur + y * stride
        r = ref + y * stride
        if memcmp(c + x_lo, r + x_lo, x_hi - x_lo) == 0:
            continue
        for tx in range(tx0, tx1):
            if first_diff[tx] >= 0:
                continue
            x0 = tx * tile_bytes
            nbytes = min(x_hi - x0, tile_bytes)
            if memcmp(c + x0, r + x0, nbytes) != 0:
                first_diff[tx] = <int32_t>y
                dirty += 1
        if dirty == tx1 - tx0:
            break
    return dirty
