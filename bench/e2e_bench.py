"""`ra-bench e2e`: what a user feels, measured end to end on a real display.

One private Xvfb; real programs draw on it (`bench.animator`, xterm, xdotool); `ra-share serve
--auto-accept` shares it from its own process; this process joins over TLS on 127.0.0.1 as the
expert's headless client and decodes every frame. Each workload runs the bench's animator,
which draws a frame counter in the screen's pixels at 60 Hz and notes when each value was
drawn; the client reads the counter out of its framebuffer after each frame. So:

- delivered fps: distinct counter values that reached the client, per second; the values the
  sharer never sent (coalesced under back-pressure or between two captures) are the misses;
- latency: drawn (after XSync in the animator) → decoded at the client, p50 / p95 / max, on
  CLOCK_MONOTONIC, which all processes of one machine share;
- bytes/s: frame payloads the client received (TLS and framing add under 1 %);
- CPU seconds of the sharer (/proc/PID/stat of its process) and of the client (this process,
  which does nothing else while a workload is measured: it sleeps on the event loop that
  decodes);
- idle cost: the sharer's CPU on a static screen, with the session open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.animator import DRAWN, read_counter
from bench.workloads import RESOLUTIONS, text_lines
from engine.channel import SessionError
from engine.client import Client, Viewer, ViewerEvents
from engine.codec import Rect
from engine.streamer import DEFAULT_MAX_FPS
from engine.tickets import Ticket
from engine.xvfb import Xvfb, stop_process

__all__ = ["WORKLOADS", "E2EError", "markdown", "parse_resolution", "plot", "run"]

WORKLOADS = DRAWN
RATE = 60.0
# After the first counter reaches the client: the load programs settle, the encoder's
# reference fills, before anything is measured.
WARMUP = 1.0
# A value drawn at the end of the window still counts if it arrives this much later.
GRACE = 0.5
START_TIMEOUT = 30.0
TYPING_DELAY_MS = 25  # 40 characters a second: a fast typist's burst
COUNTER_SPACING = 1_000_000  # counter values per workload: each run's values are its own

# Issue 7's targets at 1080p on loopback: (delivered %, p50 ms, p95 ms); None where none is set.
TARGETS: dict[str, tuple[float, float | None, float | None]] = {
    "typing": (95.0, 25.0, 40.0), "scroll": (95.0, 25.0, 40.0), "drag": (95.0, 25.0, 40.0),
    "full": (50.0, None, None),
}
IDLE_TARGET_PERCENT = 5.0


class E2EError(RuntimeError):
    """The bench could not set up or run (a program missing, the sharer not starting)."""


@dataclass(frozen=True)
class Result:
    workload: str
    seconds: float
    drawn: int
    delivered: int
    drawn_fps: float
    delivered_fps: float
    delivered_percent: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None
    updates_per_s: float
    bytes_per_s: float
    sharer_cpu_s: float
    client_cpu_s: float
    target: str


@dataclass(frozen=True)
class IdleCost:
    seconds: float
    sharer_cpu_s: float
    sharer_percent: float
    updates: int
    bytes: int
    target: str


def parse_resolution(text: str) -> tuple[int, int]:
    """'1080p', '4k' or WIDTHxHEIGHT."""
    if text in RESOLUTIONS:
        return RESOLUTIONS[text]
    match = re.fullmatch(r"(\d{3,5})x(\d{3,5})", text)
    if not match:
        raise ValueError(f"write the resolution as {', '.join(RESOLUTIONS)} or WIDTHxHEIGHT, "
                         f"not {text!r}")
    width, height = int(match[1]), int(match[2])
    if width < 640 or height < 400:
        raise ValueError(f"the workloads need at least 640x400, not {text}")
    return width, height


def verdict(workload: str, delivered_percent: float, p50: float | None,
            p95: float | None) -> str:
    """'met', or which of the issue's targets this workload missed ('' when it has none)."""
    if workload not in TARGETS:
        return ""
    share, p50_max, p95_max = TARGETS[workload]
    misses = []
    if delivered_percent < share:
        misses.append(f"delivered < {share:.0f} %")
    if p50_max is not None and (p50 is None or p50 > p50_max):
        misses.append(f"p50 > {p50_max:.0f} ms")
    if p95_max is not None and (p95 is None or p95 > p95_max):
        misses.append(f"p95 > {p95_max:.0f} ms")
    return "missed: " + ", ".join(misses) if misses else "met"


# --- the client -----------------------------------------------------------------------------


class CounterProbe(ViewerEvents):
    """Reads the animator's counter out of the framebuffer after every decoded frame."""

    def __init__(self) -> None:
        self.viewer: Viewer | None = None
        self.seen: dict[int, float] = {}
        self.last: int | None = None

    def resized(self, width: int, height: int) -> None:
        self._read()

    def frame(self, rects: list[Rect]) -> None:
        self._read()

    def _read(self) -> None:
        now = time.monotonic()
        fb = None if self.viewer is None else self.viewer.framebuffer
        if fb is None:
            return
        value = read_counter(fb)
        if value is not None and value != self.last:
            self.last = value
            self.seen.setdefault(value, now)


# --- the processes ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name (field 2) may hold spaces; the fields after it are plain numbers.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _free_port() -> int:
    """A loopback port free now; `ra-share serve` takes a port number, not 0."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


@dataclass
class Bench:
    """Everything one run starts: the display, the sharer, the client; and stops."""

    server: Xvfb
    work: Path
    rate: float
    max_fps: float
    progress: Callable[[str], None]
    sharer: subprocess.Popen[str] | None = None
    probe: CounterProbe = field(default_factory=CounterProbe)
    viewer: Viewer | None = None

    @property
    def env(self) -> dict[str, str]:
        env = self.server.environ()
        # The sharer's identity and invitation store live in the run's own directory, not the
        # user's: the bench leaves no invitation behind.
        env["XDG_CONFIG_HOME"] = str(self.work / "config")
        env["XDG_STATE_HOME"] = str(self.work / "state")
        return env

    def python(self, *args: str, **options: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, *args], env=self.env, cwd=self.work,
                                text=True, **options)

    def animator(self, *args: str) -> list[str]:
        return ["-m", "bench.animator", "--rate", str(self.rate), "--cache",
                str(self.work), *args]

    async def start_sharer(self) -> Ticket:
        (self.work / "password").write_text(secrets.token_urlsafe(12) + "\n")
        port = _free_port()
        log = (self.work / "sharer.log").open("w")
        self.sharer = self.python(
            "-m", "engine.cli", "serve", "--auto-accept", "--password-file", "password",
            "--name", "Bench", "--bind", "127.0.0.1", "--port", str(port), "--invite-out",
            "bench.rainvite", "--display", self.server.display, "--max-fps", f"{self.max_fps:g}",
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while f"on port {port}" not in (self.work / "sharer.log").read_text():
            if self.sharer.poll() is not None or time.monotonic() > deadline:
                output = (self.work / "sharer.log").read_text().strip()
                raise E2EError(f"ra-share serve did not start ({output or 'no output'})")
            await asyncio.sleep(0.05)
        return Ticket.load(self.work / "bench.rainvite")

    async def connect(self, ticket: Ticket) -> asyncio.Task[SessionError]:
        password = (self.work / "password").read_text().strip()
        session = await Client(ticket, password=password, name="ra-bench").connect()
        self.viewer = Viewer(session, self.probe)
        self.probe.viewer = self.viewer
        return asyncio.ensure_future(self.viewer.run())

    def stop_sharer(self) -> None:
        if self.sharer is None:
            return
        stop_process(self.sharer, grace=10, how=signal.SIGINT)
        if self.sharer.stdin is not None:
            self.sharer.stdin.close()

    def x(self, *command: str) -> None:
        try:
            subprocess.run(command, env=self.env, check=True, timeout=20,
                           capture_output=True)
        except FileNotFoundError:
            raise E2EError(f"{command[0]} is not installed (Debian: apt-get install "
                           f"{command[0]})") from None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise E2EError(f"{' '.join(command[:3])} failed: {exc}") from None

    @contextlib.contextmanager
    def program(self, command: Sequence[str]) -> Iterator[subprocess.Popen[str]]:
        """A load program for the length of one workload."""
        try:
            process = subprocess.Popen(list(command), env=self.env, cwd=self.work, text=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except FileNotFoundError:
            raise E2EError(f"{command[0]} is not installed (Debian: apt-get install "
                           f"{command[0]})") from None
        try:
            yield process
        finally:
            process.kill()
            process.wait()

    @contextlib.contextmanager
    def xterm(self, geometry: str, *command: str) -> Iterator[None]:
        """A terminal, mapped, with the pointer (and so the keyboard focus) inside it."""
        with self.program(["xterm", "-geometry", geometry, "+bc", "-xrm",
                           "*cursorBlink: false", "-e", *command]) as process:
            self.x("xdotool", "search", "--sync", "--onlyvisible", "--pid", str(process.pid))
            left, top = (int(v) for v in geometry.split("+")[1:3])
            self.x("xdotool", "mousemove", str(left + 20), str(top + 20))
            yield

    @contextlib.contextmanager
    def load(self, workload: str, seconds: float) -> Iterator[None]:
        """What draws besides the animator: the terminals of typing and scroll."""
        width, height = self.server.width, self.server.height
        columns, rows = min(150, (width - 80) // 6), min(60, (height - 120) // 13)
        geometry = f"{columns}x{rows}+40+40"
        if workload == "typing":
            # `cat > /dev/null`: the terminal echoes what is typed, and nothing typed runs.
            with self.xterm(geometry, "sh", "-c", "cat > /dev/null"):
                text = "\n".join(text_lines(int(seconds * 1000 / TYPING_DELAY_MS / 50) + 20,
                                            seed=3, columns=90))
                with self.program(["xdotool", "type", "--delay", str(TYPING_DELAY_MS),
                                   text]):
                    yield
        elif workload == "scroll":
            with self.xterm(geometry, sys.executable, *self.animator("feed")):
                yield
        else:
            yield


# --- one workload ---------------------------------------------------------------------------


async def measure(bench: Bench, workload: str, index: int, seconds: float) -> Result:
    assert bench.viewer is not None and bench.sharer is not None
    start = index * COUNTER_SPACING
    times_path = bench.work / f"times-{workload}.npy"
    with bench.load(workload, WARMUP + seconds + 10):
        animator = bench.python(*bench.animator("draw", workload, "--start", str(start),
                                                "--times", str(times_path)),
                                stdout=subprocess.PIPE)
        try:
            await _until(lambda: any(v >= start for v in bench.probe.seen), animator,
                         f"the client never saw the {workload} counter")
            await asyncio.sleep(WARMUP)
            viewer, sharer = bench.viewer, bench.sharer.pid
            frames, received = viewer.frames, viewer.bytes
            sharer_cpu, client_cpu = cpu_seconds(sharer), own_cpu_seconds()
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            t1 = time.monotonic()
            sharer_cpu, client_cpu = cpu_seconds(sharer) - sharer_cpu, (
                own_cpu_seconds() - client_cpu)
            frames, received = viewer.frames - frames, viewer.bytes - received
            await asyncio.sleep(GRACE)
        finally:
            animator.send_signal(signal.SIGTERM)
            await asyncio.to_thread(animator.communicate, timeout=30)
    drawn_at = np.load(times_path)
    drawn = np.flatnonzero((drawn_at >= t0) & (drawn_at <= t1))
    seen = bench.probe.seen
    latencies = np.array([seen[start + n] - drawn_at[n] for n in map(int, drawn)
                          if start + n in seen]) * 1000
    span = t1 - t0
    p50, p95, worst = ((float(np.percentile(latencies, 50)),
                        float(np.percentile(latencies, 95)), float(latencies.max()))
                       if latencies.size else (None, None, None))
    share = 100 * latencies.size / drawn.size if drawn.size else 0.0
    return Result(
        workload=workload, seconds=span, drawn=int(drawn.size), delivered=int(latencies.size),
        drawn_fps=drawn.size / span, delivered_fps=latencies.size / span,
        delivered_percent=share, latency_p50_ms=p50, latency_p95_ms=p95,
        latency_max_ms=worst, updates_per_s=frames / span, bytes_per_s=received / span,
        sharer_cpu_s=sharer_cpu, client_cpu_s=client_cpu,
        target=verdict(workload, share, p50, p95))


async def _until(condition: Callable[[], bool], process: subprocess.Popen[str],
                 failure: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not condition():
        if process.poll() is not None:
            raise E2EError(f"{failure}: the animator exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise E2EError(f"{failure} within {START_TIMEOUT:.0f} s")
        await asyncio.sleep(0.02)


async def idle_cost(bench: Bench, seconds: float) -> IdleCost:
    """The sharer's CPU on a screen where nothing moves, the expert still watching."""
    assert bench.viewer is not None and bench.sharer is not None
    await asyncio.sleep(WARMUP)
    viewer = bench.viewer
    frames, received, cpu = viewer.frames, viewer.bytes, cpu_seconds(bench.sharer.pid)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    span = time.monotonic() - t0
    cpu = cpu_seconds(bench.sharer.pid) - cpu
    percent = 100 * cpu / span
    return IdleCost(seconds=span, sharer_cpu_s=cpu, sharer_percent=percent,
                    updates=viewer.frames - frames, bytes=viewer.bytes - received,
                    target="met" if percent <= IDLE_TARGET_PERCENT else
                    f"missed: > {IDLE_TARGET_PERCENT:.0f} %")


# --- the run -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(resolution: tuple[int, int], rate: float, max_fps: float,
                  progress: Callable[[str], None]) -> AsyncIterator[Bench]:
    width, height = resolution
    with tempfile.TemporaryDirectory(prefix="ra-bench-") as work, Xvfb(width, height) as server:
        bench = Bench(server, Path(work), rate, max_fps, progress)
        session: asyncio.Task[SessionError] | None = None
        try:
            progress(f"{width}x{height}: the desktop")
            desktop = bench.python(*bench.animator("desktop"))
            await asyncio.to_thread(desktop.wait, 120)
            progress(f"{width}x{height}: starting ra-share serve")
            session = await bench.connect(await bench.start_sharer())
            yield bench
        finally:
            if session is not None and bench.viewer is not None:
                if not session.done():
                    await bench.viewer.close()
                await asyncio.gather(session, return_exceptions=True)
            bench.stop_sharer()


async def run_async(resolution: tuple[int, int], workloads: Sequence[str], seconds: float,
                    idle_seconds: float, progress: Callable[[str], None],
                    rate: float = RATE, max_fps: float = DEFAULT_MAX_FPS) -> dict[str, Any]:
    results: list[Result] = []
    idle: IdleCost | None = None
    label = f"{resolution[0]}x{resolution[1]}"
    async with running(resolution, rate, max_fps, progress) as bench:
        for name in workloads:
            progress(f"{label}: {name} ({len(results) + 1} of {len(workloads)}), {seconds:g} s")
            results.append(await measure(bench, name, WORKLOADS.index(name), seconds))
        if idle_seconds > 0:
            progress(f"{label}: idle cost on a static screen, {idle_seconds:g} s")
            idle = await idle_cost(bench, idle_seconds)
    return {
        "resolution": label, "rate_hz": rate, "max_fps": max_fps, "seconds": seconds,
        "cores": os.cpu_count(),
        "results": [asdict(r) for r in results],
        "idle_cost": None if idle is None else asdict(idle),
    }


def run(resolution: tuple[int, int], workloads: Sequence[str], seconds: float,
        idle_seconds: float, progress: Callable[[str], None],
        rate: float = RATE, max_fps: float = DEFAULT_MAX_FPS) -> dict[str, Any]:
    """Run the workloads at `resolution`; the report as plain data (JSON-ready)."""
    return asyncio.run(run_async(resolution, workloads, seconds, idle_seconds, progress, rate,
                                 max_fps))


# --- the report -----------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"### End to end, {report['resolution']}, counter drawn at {report['rate_hz']:g} Hz, "
        f"sharer capped at {report['max_fps']:g} fps, {report['seconds']:g} s a workload, "
        f"{report['cores']} cores",
        "",
        "| workload | drawn fps | delivered fps | delivered | latency p50 ms | p95 ms | max ms "
        "| updates/s | MB/s | sharer CPU s (% core) | client CPU s (% core) | target |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in report["results"]:
        span = r["seconds"]
        lines.append(
            f"| {r['workload']} | {r['drawn_fps']:.1f} | {r['delivered_fps']:.1f} "
            f"| {r['delivered_percent']:.0f} % | {_ms(r['latency_p50_ms'])} "
            f"| {_ms(r['latency_p95_ms'])} | {_ms(r['latency_max_ms'])} "
            f"| {r['updates_per_s']:.1f} | {r['bytes_per_s'] / 1e6:.2f} "
            f"| {r['sharer_cpu_s']:.2f} ({100 * r['sharer_cpu_s'] / span:.0f} %) "
            f"| {r['client_cpu_s']:.2f} ({100 * r['client_cpu_s'] / span:.0f} %) "
            f"| {r['target']} |")
    idle = report["idle_cost"]
    if idle is not None:
        lines += ["", f"Idle cost (static screen, session open, {idle['seconds']:.0f} s): sharer "
                      f"{idle['sharer_percent']:.1f} % of one core ({idle['sharer_cpu_s']:.2f} "
                      f"CPU s), {idle['updates']} updates, {idle['bytes']:,} bytes; target "
                      f"≤ {IDLE_TARGET_PERCENT:.0f} %: {idle['target']}."]
    lines += ["", "Targets (issue 7, at 1080p): typing, scroll, drag deliver ≥ 95 % of the "
                  "frames drawn, latency p50 ≤ 25 ms, p95 ≤ 40 ms; full ≥ 50 %.", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Frames per second and latency per workload, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    names = [r["workload"] for r in rows]
    x = np.arange(len(names))
    figure, (fps, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    fps.bar(x - 0.2, [r["drawn_fps"] for r in rows], 0.4, label="drawn", color="#b0b8c8")
    fps.bar(x + 0.2, [r["delivered_fps"] for r in rows], 0.4, label="delivered",
            color="#2060a0")
    fps.set_ylabel("frames per second")
    fps.set_title("Screen states drawn and delivered")
    for offset, key, colour in ((-0.27, "latency_p50_ms", "#40a060"),
                                (0.0, "latency_p95_ms", "#e0a030"),
                                (0.27, "latency_max_ms", "#c04040")):
        latency.bar(x + offset, [r[key] or 0 for r in rows], 0.27, color=colour,
                    label=key.split("_")[1])
    latency.axhline(25, color="#40a060", linestyle=":", linewidth=1)
    latency.axhline(40, color="#e0a030", linestyle=":", linewidth=1)
    latency.set_ylabel("draw → decoded, ms")
    latency.set_title("Latency")
    for axes in (fps, latency):
        axes.set_xticks(x, names)
        axes.legend()
    figure.suptitle(f"ra-bench e2e, {report['resolution']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
