import numpy as np
import numpy.typing as npt

from engine.frame_format import Copies, Frame, TileMap

def find_motion(cur: Frame, ref: Frame, tile: int, first_diff: TileMap, min_tiles: int,
                min_run: int) -> Copies: ...
def line_hashes(frame: Frame, x0: int, y0: int, x1: int, y1: int,
                by_rows: bool) -> npt.NDArray[np.uint32]: ...
def apply_copies(fb: Frame, copies: Copies) -> None: ...
