"""The README's first command on a machine without a display: `python -m bench.demo`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.demo import DESKTOP_BLUE, SHOWN_SHARE


def test_the_demo_shows_the_novices_desktop_in_the_experts_window(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run(
        [sys.executable, "-m", "bench.demo", "--bench-seconds", "0", "--out",
         str(tmp_path / "demo.png")], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "Screenshot of the expert's window" in result.stdout
    with Image.open(tmp_path / "demo.png") as image:
        shot = np.asarray(image.convert("RGB"))
    # The novice's background fills much of the expert's screen, inside the window's frame
    # (the window's own grey and white surround it).
    blue = np.all(shot == DESKTOP_BLUE, axis=-1)
    assert blue.mean() > SHOWN_SHARE
    rows, columns = np.nonzero(blue)
    assert rows.min() > 0 and columns.min() > 0
    assert (shot[: rows.min()] != DESKTOP_BLUE).any()
