"""The private X display the tests, the benchmark and the demo run on."""

from __future__ import annotations

import subprocess

import pytest

from engine.xvfb import Xvfb


def screen_size(server: Xvfb) -> tuple[int, int]:
    out = subprocess.run(["xdpyinfo"], env=server.environ(), capture_output=True, text=True,
                         check=True, timeout=10).stdout
    (line,) = [ln for ln in out.splitlines() if "dimensions:" in ln]
    width, height = line.split()[1].split("x")
    return int(width), int(height)


def test_two_servers_get_their_own_display_numbers():
    with Xvfb(320, 200) as one, Xvfb(640, 480) as two:
        assert one.display != two.display
        assert screen_size(one) == (320, 200)
        assert screen_size(two) == (640, 480)


def test_resize_within_the_maximum(xvfb: Xvfb):
    assert screen_size(xvfb) == (1024, 768)
    xvfb.resize(1280, 1024)
    assert screen_size(xvfb) == (1280, 1024)
    xvfb.resize(800, 600)
    assert screen_size(xvfb) == (800, 600)
    with pytest.raises(ValueError, match="does not fit"):
        xvfb.resize(2000, 600)


def test_stop_ends_the_server():
    server = Xvfb(320, 200).start()
    server.stop()
    result = subprocess.run(["xdpyinfo"], env=server.environ(), capture_output=True,
                            timeout=10)
    assert result.returncode != 0
