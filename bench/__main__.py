"""`ra-bench`: command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from bench import codec_bench, e2e_bench
from bench.workloads import RESOLUTIONS, WORKLOADS
from engine.codec import IMPLEMENTATIONS
from engine.streamer import DEFAULT_MAX_FPS


def _choices(value: str, known: list[str]) -> list[str]:
    return known if value == "all" else [value]


def _json_ready(value: Any) -> Any:
    """JSON has no infinity: a ratio or rate over nothing (a static screen's 0 bytes) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def _resolution(text: str) -> tuple[int, int]:
    try:
        return e2e_bench.parse_resolution(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"give a number of seconds, not {text!r}")
    return seconds


def _rate(text: str) -> float:
    rate = _seconds(text)
    if not 1 <= rate <= 240:
        raise argparse.ArgumentTypeError(f"give a rate from 1 to 240, not {text!r}")
    return rate


def _e2e_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resolution", type=_resolution, default=RESOLUTIONS["1080p"],
                        metavar="1080p|4k|WxH", help="the display's size (1080p)")
    parser.add_argument("--workload", choices=[*e2e_bench.WORKLOADS, "all"], default="all")
    parser.add_argument("--seconds", type=_seconds, default=5.0,
                        help="measured seconds per workload (5)")
    parser.add_argument("--idle-seconds", type=_seconds, default=10.0,
                        help="seconds of static screen for the idle cost (10; 0 skips it)")
    parser.add_argument("--max-fps", type=_rate, default=DEFAULT_MAX_FPS, metavar="N",
                        help=f"the sharer's frame-rate cap (its default, {DEFAULT_MAX_FPS})")
    parser.add_argument("--plot", type=Path, metavar="PATH.png",
                        help="also draw fps and latency per workload")


def _run_codec(args: argparse.Namespace) -> dict[str, Any]:
    report = codec_bench.run(
        _choices(args.codec_resolution, list(RESOLUTIONS)),
        _choices(args.codec_workload, list(WORKLOADS)),
        _choices(args.impl, list(IMPLEMENTATIONS)),
        args.frames,
        codec_bench.stderr_progress,
    )
    print(file=sys.stderr)
    print(codec_bench.markdown(report), flush=True)
    return report


def _run_e2e(args: argparse.Namespace) -> dict[str, Any]:
    if args.seconds <= 0:
        raise SystemExit("ra-bench: --seconds must be more than 0")
    try:
        report = e2e_bench.run(args.resolution, _choices(args.workload, list(
            e2e_bench.WORKLOADS)), args.seconds, args.idle_seconds,
            codec_bench.stderr_progress, max_fps=args.max_fps)
    except e2e_bench.E2EError as exc:
        print(file=sys.stderr)
        raise SystemExit(f"ra-bench: {exc}") from None
    print(file=sys.stderr)
    print(e2e_bench.markdown(report), flush=True)
    if args.plot:
        e2e_bench.plot(report, args.plot)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ra-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    codec = commands.add_parser("codec", help="encode/decode speed and size per workload")
    codec.add_argument("--resolution", dest="codec_resolution",
                       choices=[*RESOLUTIONS, "all"], default="all")
    codec.add_argument("--workload", dest="codec_workload", choices=[*WORKLOADS, "all"],
                       default="all")
    e2e = commands.add_parser("e2e", help="frame rate, latency, bytes and CPU of a live "
                              "session on a private Xvfb")
    _e2e_arguments(e2e)
    both = commands.add_parser("all", help="codec, then e2e (the codec on every resolution "
                               "and workload)")
    _e2e_arguments(both)
    both.set_defaults(codec_resolution="all", codec_workload="all")
    for sub in (codec, both):
        sub.add_argument("--impl", choices=[*IMPLEMENTATIONS, "all"], default="all")
        sub.add_argument("--frames", type=int, default=60, help="codec frames per workload (60)")
    for sub in (codec, e2e, both):
        sub.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)

    if args.command != "e2e" and args.frames < 2:
        parser.error("--frames must be at least 2")
    report: dict[str, Any]
    if args.command == "codec":
        report = _run_codec(args)
    elif args.command == "e2e":
        report = _run_e2e(args)
    else:
        report = {"codec": _run_codec(args), "e2e": _run_e2e(args)}
    if args.json:
        args.json.write_text(json.dumps(_json_ready(report), indent=2, allow_nan=False,
                                         default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
