"""`ra-bench codec`: encode and decode the desktop workloads with each implementation.

Beside each result stand the limits measured in the same run, since absolute times drift on
a shared machine and ratios do not: one `memcmp` of two whole frames (what detecting no
change cannot beat) and zstd level 1 over the whole raw frame (the naive encoder).

On a machine shared with other work the load drifts within a run, so each workload also
times one `memcmp` of the frame it just encoded against the encoder's reference (equal by
then, so the compare runs to the end, over memory exactly as warm as the encoder's), after
every frame; its median is that row's `memcmp_ms`, and the "÷ memcmp" column divides by it.
Times are this thread's CPU time, not wall time: every stage (compare, pack, zstd) runs on
the calling thread, and a time slice lent to another process is no cost of the codec.
"""

from __future__ import annotations

import functools
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyzstd

from bench.workloads import RESOLUTIONS, WORKLOADS, Desktop, Frame
from engine._native import tiles
from engine.codec import IMPLEMENTATIONS

# Seconds of CPU time of the calling thread (see the module docstring).
clock = time.thread_time


@dataclass
class Limits:
    memcmp_ms: float
    numpy_compare_ms: float
    zstd_full_ms: float
    zstd_full_bytes: float


@dataclass
class Result:
    workload: str
    resolution: str
    impl: str
    encode_ms: float
    decode_ms: float
    fps: float
    bytes_per_frame: float
    ratio: float
    memcmp_ms: float


def _median_ms(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        action()
        times.append(clock() - start)
    return 1000 * statistics.median(times)


def measure_limits(desktop: Desktop, frames: int) -> Limits:
    a = desktop.frame
    b = a.copy()
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    memcmp_ms = _median_ms(lambda: tiles.frames_equal(flat_a, flat_b), 40)
    numpy_ms = _median_ms(lambda: bool((flat_a != flat_b).any()), 10)
    samples = [f.copy() for f, _ in zip(WORKLOADS["full"](desktop, frames), range(5), strict=False)]
    buffers = [memoryview(f.reshape(-1)) for f in samples]  # type: ignore[arg-type]
    compressed = [pyzstd.compress(b, 1) for b in buffers]
    zstd_ms = statistics.median(
        _median_ms(functools.partial(pyzstd.compress, b, 1), 3) for b in buffers)
    return Limits(memcmp_ms, numpy_ms, zstd_ms, statistics.mean(map(len, compressed)))


def run_workload(impl: str, resolution: str, name: str, desktop: Desktop,
                 frames: int) -> Result:
    encoder_cls, decoder_cls = IMPLEMENTATIONS[impl]
    encoder, decoder = encoder_cls(), decoder_cls()
    stream = WORKLOADS[name](desktop, frames + 1)
    decoder.decode(encoder.encode(next(stream)))  # the keyframe is not what we measure
    encode, decode, sizes, compare = [], [], [], []
    last: Frame | None = None
    gc.disable()
    try:
        for frame in stream:
            start = clock()
            message = encoder.encode(frame)
            encoded = clock()
            if message:
                decoder.decode(message)
            decoded = clock()
            reference = encoder.reference
            assert reference is not None
            tiles.frames_equal(frame.reshape(-1), reference.reshape(-1))
            compared = clock()
            encode.append(encoded - start)
            decode.append(decoded - encoded)
            compare.append(compared - decoded)
            sizes.append(len(message))
            last = frame
    finally:
        gc.enable()
    assert last is not None and decoder.framebuffer is not None
    if not np.array_equal(decoder.framebuffer[..., :3], last[..., :3]):
        raise AssertionError(f"{impl} {name} {resolution}: the decoded frame differs")
    encode_ms = 1000 * statistics.median(encode)
    bytes_per_frame = statistics.mean(sizes)
    raw = last.nbytes
    return Result(
        workload=name, resolution=resolution, impl=impl, encode_ms=encode_ms,
        decode_ms=1000 * statistics.median(decode),
        fps=1000 / encode_ms if encode_ms else float("inf"),
        bytes_per_frame=bytes_per_frame,
        ratio=raw / bytes_per_frame if bytes_per_frame else float("inf"),
        memcmp_ms=1000 * statistics.median(compare),
    )


def run(resolutions: Iterable[str], workloads: Iterable[str], impls: Iterable[str],
        frames: int, progress: Callable[[str], None]) -> dict[str, Any]:
    limits: dict[str, Limits] = {}
    results: list[Result] = []
    for resolution in resolutions:
        width, height = RESOLUTIONS[resolution]
        label = f"{width}x{height}"
        progress(f"{label}: drawing the desktop")
        desktop = Desktop(width, height)
        progress(f"{label}: measuring the limits")
        limits[label] = measure_limits(desktop, frames)
        for name in workloads:
            for impl in impls:
                progress(f"{label}: {name} with {impl}")
                results.append(run_workload(impl, label, name, desktop, frames))
    return {"limits": {k: asdict(v) for k, v in limits.items()},
            "results": [asdict(r) for r in results]}


def _number(value: float, digits: int = 2) -> str:
    return "∞" if value == float("inf") else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for label, limits in report["limits"].items():
        lines += [
            f"### {label}",
            "",
            f"Limits in this run: memcmp of two frames {limits['memcmp_ms']:.2f} ms (÷ memcmp "
            "uses the memcmp timed beside each workload, in the last column) · "
            f"numpy compare {limits['numpy_compare_ms']:.2f} ms · zstd-1 of a whole frame "
            f"{limits['zstd_full_ms']:.2f} ms, {limits['zstd_full_bytes']:,.0f} bytes",
            "",
            "| workload | impl | encode ms | ÷ memcmp | ÷ zstd-1 | decode ms | fps "
            "| bytes/frame | raw ÷ bytes | native speed-up | memcmp ms |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        rows = [r for r in report["results"] if r["resolution"] == label]
        for row in rows:
            twin = next((r for r in rows if r["workload"] == row["workload"]
                         and r["impl"] == "numpy"), None)
            speedup = (f"{twin['encode_ms'] / row['encode_ms']:.1f}×"
                       if twin and row["impl"] == "native" and row["encode_ms"] else "")
            lines.append(
                f"| {row['workload']} | {row['impl']} | {row['encode_ms']:.3f} "
                f"| {row['encode_ms'] / row['memcmp_ms']:.2f} "
                f"| {row['encode_ms'] / limits['zstd_full_ms']:.2f} | {row['decode_ms']:.3f} "
                f"| {_number(row['fps'], 0)} | {row['bytes_per_frame']:,.0f} "
                f"| {_number(row['ratio'], 0)} | {speedup} | {row['memcmp_ms']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def stderr_progress(message: str) -> None:
    print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)
