"""The one-command demo: `make demo` (or `python -m bench.demo`).

With a display ($DISPLAY set): shares it with a fresh invitation and opens the expert's window on
it, until the window is closed.

Without one (a server, a container): starts a private desktop on Xvfb (two terminals with
something moving), the sharer on it, the expert's window on a second Xvfb, and waits until the
window shows the shared desktop; then it writes a screenshot of the expert's screen to
`demo.png`, prints the end-to-end figures (`ra-bench e2e`, briefly) and stops everything it
started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mss
import numpy as np

from engine.headless import save_png
from engine.netaddr import free_port
from engine.xvfb import Xvfb, stop_process

__all__ = ["main"]

BIN = Path(sys.executable).parent
# The novice's desktop background: Windows XP's blue, easy to find again in the expert's window.
DESKTOP_BLUE = (0x3A, 0x6E, 0xA5)
NOVICE_SIZE = (1280, 720)
EXPERT_SIZE = (1600, 1000)
SHOW_TIMEOUT = 60.0
# The novice's background must cover this much of the expert's screen (the window scales the
# 1280x720 desktop into itself; the terminals cover part of it).
SHOWN_SHARE = 0.2


@contextlib.contextmanager
def started(command: list[str], **options: object) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that is stopped (politely, then not) when the block ends."""
    process = subprocess.Popen(command, **options)  # type: ignore[call-overload]
    try:
        yield process
    finally:
        stop_process(process, grace=10)


def grab(display: str) -> np.ndarray:
    with mss.MSS(display=display) as screen:
        shot = screen.grab(screen.monitors[0])
        return np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4).copy()


def blue_share(frame: np.ndarray) -> float:
    """How much of `frame` is the novice's desktop blue."""
    b, g, r = DESKTOP_BLUE[2], DESKTOP_BLUE[1], DESKTOP_BLUE[0]
    hits = (frame[..., 0] == b) & (frame[..., 1] == g) & (frame[..., 2] == r)
    return float(hits.mean())


def novice_desktop(server: Xvfb) -> list[list[str]]:
    """What runs on the demo desktop: a background and two terminals with something moving."""
    colour = "#{:02x}{:02x}{:02x}".format(*DESKTOP_BLUE)
    subprocess.run(["xsetroot", "-solid", colour], env=server.environ(), check=True,
                   timeout=10)
    return [
        ["xterm", "-geometry", "80x24+40+40", "-title", "top", "-e", "top", "-d", "0.5"],
        ["xterm", "-geometry", "60x12+700+420", "-title", "clock", "-e", "sh", "-c",
         "while :; do clear; date '+%H:%M:%S'; echo; echo 'remote-assist demo desktop'; "
         "sleep 0.25; done"],
    ]


def run_private(out: Path, bench_seconds: float) -> int:
    """No display here: everything on private Xvfb servers."""
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ra-demo-")))
        env = {**os.environ, "XDG_STATE_HOME": str(home / "state"),
               "XDG_CONFIG_HOME": str(home / "config")}
        novice = stack.enter_context(Xvfb(*NOVICE_SIZE))
        expert = stack.enter_context(Xvfb(*EXPERT_SIZE))
        print(f"Novice's desktop on {novice.display}, expert's screen on {expert.display}",
              flush=True)
        for program in novice_desktop(novice):
            stack.enter_context(started(program, env=novice.environ(env),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ticket = home / "demo.rainvite"
        port = free_port()
        sharer = stack.enter_context(started(
            [str(BIN / "ra-share"), "serve", "--no-password", "--auto-accept", "--name",
             "Demo novice", "--bind", "127.0.0.1", "--port", str(port), "--invite-out",
             str(ticket)], env=novice.environ(env), stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for(ticket.exists, 30, "the sharer did not write its invitation", sharer)
        viewer_env = expert.environ(env)
        viewer_env["QT_QPA_PLATFORM"] = "xcb"
        viewer = stack.enter_context(started(
            [str(BIN / "ra-view"), str(ticket), "--name", "Demo expert"], env=viewer_env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        # No window manager on a private display: fill the screen with the window by hand.
        subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--classname", "ra-view",
                        "windowmove", "%1", "0", "0", "windowsize", "%1", "100%", "100%"],
                       env=viewer_env, timeout=SHOW_TIMEOUT, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("Waiting for the expert's window to show the novice's desktop…", flush=True)
        try:
            _wait_for(lambda: blue_share(grab(expert.display)) > SHOWN_SHARE, SHOW_TIMEOUT,
                      "the expert's window did not show the shared desktop", viewer)
        except SystemExit:
            save_png(grab(expert.display), out)
            print(f"What the expert's screen showed instead: {out}", file=sys.stderr)
            raise
        time.sleep(1.0)  # let a few more frames of the moving terminals arrive
        save_png(grab(expert.display), out)
        print(f"Screenshot of the expert's window: {out}", flush=True)
    if bench_seconds > 0:
        print("\nEnd-to-end figures (ra-bench e2e, briefly):", flush=True)
        subprocess.run([str(BIN / "ra-bench"), "e2e", "--seconds", str(bench_seconds)],
                       check=False)
    return 0


def run_on_display(display: str) -> int:
    """A real desktop: share it and open the expert's window on it, until that is closed."""
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ra-demo-")))
        ticket = home / "demo.rainvite"
        port = free_port()
        sharer = stack.enter_context(started(
            [str(BIN / "ra-share"), "serve", "--no-password", "--auto-accept", "--name",
             "Demo novice", "--bind", "127.0.0.1", "--port", str(port), "--invite-out",
             str(ticket)], stdin=subprocess.PIPE))
        _wait_for(ticket.exists, 30, "the sharer did not write its invitation", sharer)
        print(f"Sharing {display}; close the expert's window to stop.", flush=True)
        return subprocess.run([str(BIN / "ra-view"), str(ticket), "--name", "Demo expert"],
                              check=False).returncode


def _wait_for(condition: Callable[[], bool], timeout: float, failure: str,
              process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            detail = process.stderr.read().decode(errors="replace").strip() if (
                process.stderr) else ""
            raise SystemExit(f"demo: {failure}: it exited with status {process.returncode}"
                             + (f" ({detail.splitlines()[-1]})" if detail else ""))
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {failure} within {timeout:.0f} seconds")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--private", action="store_true",
                        help="use private Xvfb displays even when $DISPLAY is set")
    parser.add_argument("--out", type=Path, default=Path("demo.png"),
                        help="where the screenshot goes (default demo.png)")
    parser.add_argument("--bench-seconds", type=float, default=2.0,
                        help="seconds per e2e workload after the screenshot; 0 skips it")
    args = parser.parse_args(argv)
    display = os.environ.get("DISPLAY")
    if display and not args.private:
        return run_on_display(display)
    return run_private(args.out, args.bench_seconds)


if __name__ == "__main__":
    sys.exit(main())
