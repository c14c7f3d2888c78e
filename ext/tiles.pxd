# Change detection shared by the native modules: declarations and the inline scan.
from libc.stdint cimport uint8_t, uint32_t
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
    Py_ssize_t rows, Py_ssize_t tile, Py_ssize_t* first_diff,
) noexcept nogil:
    """For one band of tile rows, record per tile column the first row that differs (-1: none).

    `cur` and `ref` point at the band's first row. Each row is compared whole first: on a
    static screen that is one memcmp per row, which is the physical limit. Only a row that
    differs is split by tile, and a tile stops being compared at its first differing row
    (TigerVNC's ComparingUpdateTracker does the same). Returns the number of dirty tiles.
    """
    cdef Py_ssize_t ntx = (width + tile - 1) // tile
    cdef Py_ssize_t row_bytes = width * 4
    cdef Py_ssize_t tile_bytes = tile * 4
    cdef Py_ssize_t y, tx, x0, nbytes
    cdef Py_ssize_t dirty = 0
    cdef const uint8_t* c
    cdef const uint8_t* r
    for tx in range(ntx):
        first_diff[tx] = -1
    for y in range(rows):
        c = cur + y * stride
        r = ref + y * stride
        if memcmp(c, r, row_bytes) == 0:
            continue
        for tx in range(ntx):
            if first_diff[tx] >= 0:
                continue
            x0 = tx * tile_bytes
            nbytes = row_bytes - x0
            if nbytes > tile_bytes:
                nbytes = tile_bytes
            if memcmp(c + x0, r + x0, nbytes) != 0:
                first_diff[tx] = y
                dirty += 1
        if dirty == ntx:
            break
    return dirty
