# cython: boundscheck=False, wraparound=False, cdivision=True
"""Change detection: which tiles differ from the reference, and from which row.

The map it fills (tile rows × tile columns of int32, the first differing row inside each
tile, -1 where the tile is unchanged) drives the encoder in `delta.pyx` and the motion
search in `motion.pyx`.
"""
from libc.stdint cimport int32_t, uint8_t
from libc.string cimport memcmp

from tiles cimport scan_band


def scan(const uint8_t[:, :, ::1] cur, const uint8_t[:, :, ::1] ref, Py_ssize_t tile,
         int32_t[:, ::1] first_diff, Py_ssize_t tx0, Py_ssize_t ty0, Py_ssize_t tx1,
         Py_ssize_t ty1):
    """Fill `first_diff` for tiles tx0..tx1-1 × ty0..ty1-1; return how many of them differ."""
    if cur.shape[0] != ref.shape[0] or cur.shape[1] != ref.shape[1] or cur.shape[2] != 4:
        raise ValueError("frames must both be (H, W, 4) and the same size")
    if tile < 1:
        raise ValueError("tile size must be positive")
    cdef Py_ssize_t height = cur.shape[0], width = cur.shape[1]
    cdef Py_ssize_t nty = (height + tile - 1) // tile, ntx = (width + tile - 1) // tile
    if first_diff.shape[0] != nty or first_diff.shape[1] != ntx:
        raise ValueError("the tile map does not fit the frame")
    if not (0 <= tx0 <= tx1 <= ntx and 0 <= ty0 <= ty1 <= nty):
        raise ValueError("tile range is outside the frame")
    cdef Py_ssize_t ty, y0, dirty = 0
    if tx0 == tx1:
        return 0
    with nogil:
        for ty in range(ty0, ty1):
            y0 = ty * tile
            dirty += scan_band(&cur[y0, 0, 0], &ref[y0, 0, 0], width * 4, width,
                               min(tile, height - y0), tile, tx0, tx1, &first_diff[ty, 0])
    return dirty


def frames_equal(const uint8_t[::1] a, const uint8_t[::1] b):
    """One memcmp over two whole frames: the physical limit of change detection."""
    if a.shape[0] != b.shape[0]:
        return False
    cdef int result
    with nogil:
        result = memcmp(&a[0], &b[0], a.shape[0])
    return result == 0
