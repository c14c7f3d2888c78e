import numpy as np
import numpy.typing as npt

def scan(
    cur: npt.NDArray[np.uint8],
    ref: npt.NDArray[np.uint8],
    tile: int,
    first_diff: npt.NDArray[np.int32],
    tx0: int,
    ty0: int,
    tx1: int,
    ty1: int,
) -> int: ...
def frames_equal(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> bool: ...
