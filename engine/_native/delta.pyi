import numpy as np
import numpy.typing as npt

DATA_SLACK: int

def encode_tiles(
    cur: npt.NDArray[np.uint8],
    ref: npt.NDArray[np.uint8],
    tile: int,
    keyframe: bool,
    first_diff: npt.NDArray[np.int32],
    indices: npt.NDArray[np.uint32],
    modes: npt.NDArray[np.uint8],
    data: npt.NDArray[np.uint8],
) -> tuple[int, int]: ...
def apply_tiles(
    fb: npt.NDArray[np.uint8],
    tile: int,
    indices: npt.NDArray[np.uint32],
    modes: npt.NDArray[np.uint8],
    data: npt.NDArray[np.uint8] | bytes | memoryview,
) -> None: ...
