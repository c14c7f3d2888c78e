"""The codec as the rest of the program uses it: `Encoder`, `Decoder`, `CodecError`.

The tile work runs in the native modules built from `ext/`. Set ``RA_CODEC=numpy`` to run
the numpy twin instead (same API, same bytes, much slower), for example to rule the native
code out while chasing a bug.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import numpy.typing as npt

from engine import codec_py, frame_format
from engine.frame_format import CodecError, Copies, Frame, Mode, Rect, TileMap, TileRange, tile_grid

__all__ = [
    "IMPLEMENTATIONS",
    "CodecError",
    "Decoder",
    "Encoder",
    "Mode",
    "NativeDecoder",
    "NativeEncoder",
    "Rect",
]

try:
    if sys.byteorder != "little":
        raise ImportError("the native codec handles pixels as little-endian words")
    from engine._native import delta, motion, tiles
except ImportError as exc:  # pragma: no cover - a broken install, reported on first use
    _native_missing: ImportError | None = exc
else:
    _native_missing = None


class NativeKernel:
    name = "native"

    def __init__(self) -> None:
        if _native_missing is not None:
            raise ImportError(
                f"the native codec is not built ({_native_missing}); run `pip install -e .` "
                "or set RA_CODEC=numpy"
            )
        self._layout: tuple[int, int, int] | None = None
        # Row hashes for the motion search: the reference's, and the frame's being encoded,
        # which become the reference's once it is (see `encode_tiles`).
        self._rows: tuple[motion.RowHashes, motion.RowHashes] | None = None
        self._searched = False
        self._indices = np.empty(0, np.uint32)
        self._modes = np.empty(0, np.uint8)
        self._data = np.empty(0, np.uint8)

    def scan(self, cur: Frame, ref: Frame, tile: int, first_diff: TileMap,
             tile_range: TileRange) -> int:
        return tiles.scan(cur, ref, tile, first_diff, *tile_range)

    def find_motion(self, cur: Frame, ref: Frame, tile: int,
                    first_diff: TileMap, min_tiles: int, min_run: int) -> Copies:
        height = cur.shape[0]
        if self._rows is None or self._rows[0].height != height:
            self._rows = (motion.RowHashes(height), motion.RowHashes(height))
        self._searched = False
        copies = motion.find_motion(cur, ref, tile, first_diff, min_tiles, min_run,
                                    *self._rows)
        self._searched = True
        return copies

    def apply_copies(self, fb: Frame, copies: Copies) -> None:
        motion.apply_copies(fb, copies)

    def encode_tiles(
        self, cur: Frame, ref: Frame, tile: int, keyframe: bool,
        first_diff: TileMap,
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8], memoryview]:
        height, width = cur.shape[:2]
        if self._layout != (height, width, tile):
            columns, rows = tile_grid(width, height, tile)
            self._indices = np.empty(columns * rows, np.uint32)
            self._modes = np.empty(columns * rows, np.uint8)
            self._data = np.empty(3 * height * width + delta.DATA_SLACK, np.uint8)
            self._layout = (height, width, tile)
        count, used = delta.encode_tiles(
            cur, ref, tile, keyframe, first_diff, self._indices, self._modes, self._data
        )
        # The reference is now this frame: the rows its search hashed are the reference's
        # for the next search. Without a search this time, nothing is known of them.
        if self._rows is not None:
            ref_rows, cur_rows = self._rows
            if self._searched:
                self._rows = (cur_rows, ref_rows)
            else:
                ref_rows.forget()
        self._searched = False
        return self._indices[:count], self._modes[:count], memoryview(self._data)[:used]  # type: ignore[arg-type]

    def apply_tiles(
        self,
        fb: Frame,
        tile: int,
        indices: npt.NDArray[np.uint32],
        modes: npt.NDArray[np.uint8],
        data: memoryview,
    ) -> None:
        try:
            delta.apply_tiles(fb, tile, indices, modes, data)
        except ValueError as exc:
            raise CodecError(str(exc)) from None


class NativeEncoder(frame_format.Encoder):
    kernel_class = NativeKernel


class NativeDecoder(frame_format.Decoder):
    kernel_class = NativeKernel


IMPLEMENTATIONS: dict[str, tuple[type[frame_format.Encoder], type[frame_format.Decoder]]] = {
    "native": (NativeEncoder, NativeDecoder),
    "numpy": (codec_py.Encoder, codec_py.Decoder),
}

_chosen = os.environ.get("RA_CODEC", "native")
if _chosen not in IMPLEMENTATIONS:
    raise ImportError(f"RA_CODEC={_chosen!r}: choose one of {', '.join(IMPLEMENTATIONS)}")
Encoder, Decoder = IMPLEMENTATIONS[_chosen]
