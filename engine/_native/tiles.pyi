import numpy as np
import numpy.typing as npt

def dirty_tiles(
    cur: npt.NDArray[np.uint8], ref: npt.NDArray[np.uint8], tile: int
) -> npt.NDArray[np.bool_]: ...
def frames_equal(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> bool: ...
