# cython: boundscheck=False, wraparound=False, cdivision=True
"""Dirty-tile detection, exposed for the benchmarks and the tests.

The encoder in `delta.pyx` runs the same inline scan (`tiles.pxd`) in its own pass, so that
detection, encoding and the reference update touch each tile's memory once.
"""
import numpy as np

from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp

from tiles cimport scan_band


def dirty_tiles(const uint8_t[:, :, ::1] cur, const uint8_t[:, :, ::1] ref, Py_ssize_t tile):
    """Boolean (tile rows, tile columns) map of the tiles where `cur` differs from `ref`."""
    if cur.shape[0] != ref.shape[0] or cur.shape[1] != ref.shape[1] or cur.shape[2] != 4:
        raise ValueError("frames must both be (H, W, 4) and the same size")
    if tile < 1:
        raise ValueError("tile size must be positive")
    cdef Py_ssize_t height = cur.shape[0], width = cur.shape[1]
    cdef Py_ssize_t nty = (height + tile - 1) // tile, ntx = (width + tile - 1) // tile
    out = np.zeros((nty, ntx), dtype=np.bool_)
    cdef uint8_t[:, ::1] marks = out.view(np.uint8)
    cdef Py_ssize_t* first_diff = <Py_ssize_t*>malloc(ntx * sizeof(Py_ssize_t))
    if first_diff == NULL:
        raise MemoryError()
    cdef Py_ssize_t ty, tx, y0
    try:
        with nogil:
            for ty in range(nty):
                y0 = ty * tile
                scan_band(&cur[y0, 0, 0], &ref[y0, 0, 0], width * 4, width,
                          min(tile, height - y0), tile, first_diff)
                for tx in range(ntx):
                    marks[ty, tx] = first_diff[tx] >= 0
    finally:
        free(first_diff)
    return out


def frames_equal(const uint8_t[::1] a, const uint8_t[::1] b):
    """One memcmp over two whole frames: the physical limit of change detection."""
    if a.shape[0] != b.shape[0]:
        return False
    cdef int result
    with nogil:
        result = memcmp(&a[0], &b[0], a.shape[0])
    return result == 0
