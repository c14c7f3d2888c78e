import numpy as np
import numpy.typing as npt

def find_motion(
    cur: npt.NDArray[np.uint8],
    ref: npt.NDArray[np.uint8],
    tile: int,
    first_diff: npt.NDArray[np.int32],
    min_run: int,
) -> npt.NDArray[np.int32]: ...
def line_hashes(
    frame: npt.NDArray[np.uint8], x0: int, y0: int, x1: int, y1: int, by_rows: bool
) -> npt.NDArray[np.uint32]: ...
def apply_copies(fb: npt.NDArray[np.uint8], copies: npt.NDArray[np.int32]) -> None: ...
