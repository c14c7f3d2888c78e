"""`ra-bench`: command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import codec_bench
from bench.workloads import RESOLUTIONS, WORKLOADS
from engine.codec import IMPLEMENTATIONS


def _choices(value: str, known: list[str]) -> list[str]:
    return known if value == "all" else [value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ra-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    codec = commands.add_parser("codec", help="encode/decode speed and size per workload")
    codec.add_argument("--resolution", choices=[*RESOLUTIONS, "all"], default="all")
    codec.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    codec.add_argument("--impl", choices=[*IMPLEMENTATIONS, "all"], default="all")
    codec.add_argument("--frames", type=int, default=60, help="frames per workload (60)")
    codec.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)

    if args.frames < 2:
        parser.error("--frames must be at least 2")
    report = codec_bench.run(
        _choices(args.resolution, list(RESOLUTIONS)),
        _choices(args.workload, list(WORKLOADS)),
        _choices(args.impl, list(IMPLEMENTATIONS)),
        args.frames,
        codec_bench.stderr_progress,
    )
    print(file=sys.stderr)
    print(codec_bench.markdown(report))
    if args.json:
        args.json.write_text(json.dumps(codec_bench.json_ready(report), indent=2,
                                         allow_nan=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
