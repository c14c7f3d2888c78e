"""A private X display: Xvfb on a free display number, for the tests, `ra-bench` and the demo.

Xvfb picks the number itself (``-displayfd``), so two of them never race for one. The server
is started with room to grow (``max_size``): RandR on Xvfb can shrink the screen below its
starting size and grow it back, never beyond (``xrandr --fb WxH``).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from types import TracebackType

__all__ = ["Xvfb", "XvfbError", "stop_process"]

START_TIMEOUT = 10.0


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 5.0,
                 how: signal.Signals = signal.SIGTERM) -> None:
    """Ask a child to stop (`how`: SIGTERM, or SIGINT for a program that ends cleanly on
    Ctrl+C); after `grace` seconds, make it (SIGKILL)."""
    if process.poll() is None:
        process.send_signal(how)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class XvfbError(RuntimeError):
    """Xvfb is missing or did not start."""


class Xvfb:
    """``with Xvfb(1280, 800) as x: ...`` runs an X server; ``x.display`` is its name (":12")."""

    def __init__(self, width: int = 1280, height: int = 800, *, depth: int = 24,
                 max_size: tuple[int, int] | None = None) -> None:
        self.width, self.height, self.depth = width, height, depth
        # Xvfb's screen is as large as it will ever be; a smaller size is set through RandR.
        self.max_size = max_size or (width, height)
        self.display = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Xvfb:
        binary = shutil.which("Xvfb")
        if binary is None:
            raise XvfbError("Xvfb is not installed (Debian: apt-get install xvfb)")
        read_end, write_end = os.pipe()
        max_w, max_h = self.max_size
        try:
            self._process = subprocess.Popen(
                [binary, "-displayfd", str(write_end), "-screen", "0",
                 f"{max_w}x{max_h}x{self.depth}", "-nolisten", "tcp", "-noreset",
                 "+extension", "RANDR", "+extension", "XFIXES"],
                pass_fds=(write_end,), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            os.close(write_end)
            write_end = -1
            number = self._read_display_number(read_end)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        self.display = f":{number}"
        if (self.width, self.height) != self.max_size:
            self.resize(self.width, self.height)
        return self

    def _read_display_number(self, fd: int) -> int:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = os.read(fd, 64) if ready else b""
            if not chunk:
                raise XvfbError(f"Xvfb did not start: {self._stop_with_output()}")
            data += chunk
        return int(data)

    def _stop_with_output(self) -> str:
        """Stop a server that failed to start; its last line of output says why."""
        process = self._process
        assert process is not None and process.stderr is not None
        process.kill()
        err = process.stderr.read().decode(errors="replace").strip()
        self.stop()
        return err.splitlines()[-1] if err else f"exit status {process.wait()}"

    def resize(self, width: int, height: int) -> None:
        """Change the screen size through RandR, as a user changing resolution would."""
        max_w, max_h = self.max_size
        if not (0 < width <= max_w and 0 < height <= max_h):
            raise ValueError(f"{width}x{height} does not fit this Xvfb ({max_w}x{max_h} at most)")
        # xrandr reports an error about the (virtual) output and changes the size anyway.
        subprocess.run(["xrandr", "--fb", f"{width}x{height}"], env=self.environ(),
                       capture_output=True, timeout=10)
        self.width, self.height = width, height

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with DISPLAY pointing here."""
        env = dict(os.environ if base is None else base)
        env["DISPLAY"] = self.display
        env.pop("WAYLAND_DISPLAY", None)
        return env

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process)
        if process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> Xvfb:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
