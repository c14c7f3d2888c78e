"""`ra-bench e2e` for real but briefly: its own Xvfb, `ra-share serve` in a process of its own,
the animator and xterm drawing, the client decoding the frame counter. Structure and the
counter's arithmetic are checked here; speed is what the bench itself reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import e2e_bench
from bench.__main__ import main
from bench.animator import BLOCK, COUNTER_BITS, counter_image, read_counter


def on_screen(counter: np.ndarray, width: int = 640, height: int = 100) -> np.ndarray:
    """A BGRX frame with `counter` in the top-left corner, over grey."""
    frame = np.full((height, width, 4), 128, np.uint8)
    frame[:counter.shape[0], :counter.shape[1]] = counter
    return frame


@pytest.mark.parametrize("value", [0, 1, 2, 1_000_000, 5_000_123, 2**COUNTER_BITS - 1])
def test_the_counter_reads_back(value):
    assert read_counter(on_screen(counter_image(value))) == value


def test_no_counter_or_a_torn_one_reads_as_none():
    assert read_counter(on_screen(np.zeros((2 * BLOCK, COUNTER_BITS * BLOCK, 4), np.uint8))) \
        is None
    assert read_counter(np.full((100, 640, 4), 255, np.uint8)) is None
    # The top row of one value over the bottom row of the next: not a number at all.
    torn = counter_image(41).copy()
    torn[BLOCK:] = counter_image(42)[BLOCK:]
    assert read_counter(on_screen(torn)) is None
    # A block that is neither black nor white (something drawn over it).
    smudged = counter_image(7).copy()
    smudged[BLOCK // 2, BLOCK // 2 + 3 * BLOCK, :3] = (255, 0, 255)
    assert read_counter(on_screen(smudged)) is None
    assert read_counter(np.zeros((4, 4, 4), np.uint8)) is None


def test_a_short_run_measures_what_reached_the_client(tmp_path):
    progress: list[str] = []
    report = e2e_bench.run((800, 600), ["typing", "drag"], seconds=1.5, idle_seconds=1.0,
                           progress=progress.append)
    assert report["resolution"] == "800x600"
    assert [r["workload"] for r in report["results"]] == ["typing", "drag"]
    assert any("typing" in line for line in progress)
    for row in report["results"]:
        assert row["seconds"] >= 1.5
        # The animator drew at about 60 Hz; the client read some of those values back, never
        # more than were drawn, and never before they were drawn.
        assert row["drawn"] > 0
        assert 0 < row["delivered"] <= row["drawn"]
        assert row["delivered_percent"] == pytest.approx(100 * row["delivered"] / row["drawn"])
        assert 0 < row["latency_p50_ms"] <= row["latency_p95_ms"] <= row["latency_max_ms"]
        assert row["delivered_fps"] <= row["drawn_fps"]
        assert row["updates_per_s"] > 0 and row["bytes_per_s"] > 0
        assert row["sharer_cpu_s"] > 0 and row["client_cpu_s"] > 0
        assert row["target"] == "met" or row["target"].startswith("missed: ")
    typing, drag = report["results"]
    # A window crossing the screen costs more bytes than a few typed characters.
    assert drag["bytes_per_s"] > typing["bytes_per_s"]
    idle = report["idle_cost"]
    assert idle["seconds"] >= 1.0 and idle["sharer_cpu_s"] >= 0
    json.dumps(report, allow_nan=False)

    table = e2e_bench.markdown(report)
    assert "| typing |" in table and "| drag |" in table and "Idle cost" in table
    e2e_bench.plot(report, tmp_path / "e2e.png")
    with Image.open(tmp_path / "e2e.png") as image:
        assert image.size[0] > 600


def test_the_command_line(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    assert main(["e2e", "--resolution", "640x480", "--workload", "video", "--seconds", "1",
                 "--idle-seconds", "0", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("### End to end, 640x480, counter drawn at 60 Hz, sharer capped "
                            "at 60 fps")
    report = json.loads(out.read_text())
    assert report["idle_cost"] is None
    (row,) = report["results"]
    assert row["workload"] == "video" and 0 < row["delivered"] <= row["drawn"]
    assert f"| video | {row['drawn_fps']:.1f} |" in table


@pytest.mark.parametrize(("args", "message"), [
    (["--resolution", "8k"], "write the resolution as 1080p, 4k or WIDTHxHEIGHT"),
    (["--resolution", "320x200"], "at least 640x400"),
    (["--seconds", "soon"], "give a number of seconds"),
    (["--workload", "juggling"], "invalid choice"),
])
def test_wrong_calls_say_what_to_write(args, message):
    result = subprocess.run([sys.executable, "-m", "bench", "e2e", *args],
                            capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).parent)
    assert result.returncode == 2
    assert message in result.stderr


def test_json_reports_have_no_infinity(tmp_path, capsys):
    """A static screen encodes to 0 bytes: its ratio is written as null, not as Infinity."""
    out = tmp_path / "codec.json"
    assert main(["codec", "--resolution", "1080p", "--workload", "static", "--impl", "native",
                 "--frames", "2", "--json", str(out)]) == 0
    assert "| static | native |" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["results"]
    assert row["bytes_per_frame"] == 0 and row["ratio"] is None
