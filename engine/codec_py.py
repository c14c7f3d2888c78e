"""The numpy twin of the native tile kernel: the correctness oracle and the speed baseline.

It makes the same choices as `ext/delta.pyx` (same scan result, same solid test, same
XOR-or-raw guess from the same sampled rows), so both produce the same bytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine import frame_format
from engine.frame_format import Frame, Mode, tile_grid

__all__ = ["Decoder", "Encoder", "NumpyKernel", "dirty_tiles"]

COLOUR = np.uint32(0x00FFFFFF)
OPAQUE = np.uint32(0xFF000000)
SAMPLE_STEP = 4  # as in delta.pyx


def _words(frame: Frame) -> npt.NDArray[np.uint32]:
    """A (H, W) view of a BGRX frame, one little-endian word per pixel."""
    return frame.view("<u4")[..., 0]


def dirty_tiles(cur: Frame, ref: Frame, tile: int) -> npt.NDArray[np.bool_]:
    """Boolean (tile rows, tile columns) map of the tiles where `cur` differs from `ref`."""
    height, width = cur.shape[:2]
    changed = _words(cur) != _words(ref)
    by_band = np.logical_or.reduceat(changed, np.arange(0, height, tile), axis=0)
    return np.logical_or.reduceat(by_band, np.arange(0, width, tile), axis=1)


class NumpyKernel:
    name = "numpy"

    def dirty_tiles(self, cur: Frame, ref: Frame, tile: int) -> npt.NDArray[np.bool_]:
        return dirty_tiles(cur, ref, tile)

    def encode_tiles(
        self, cur: Frame, ref: Frame, tile: int, keyframe: bool
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8], memoryview]:
        height, width = cur.shape[:2]
        columns, rows = tile_grid(width, height, tile)
        if keyframe:
            dirty = np.ones((rows, columns), dtype=bool)
        else:
            dirty = dirty_tiles(cur, ref, tile)
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
