"""`ra-view`: the expert's side.

    ra-view TICKET [--password-file PATH] [--name NAME]
    ra-view TICKET --headless [--snapshot OUT.png] [--seconds N]
"""

from __future__ import annotations

import argparse
import sys

from engine import headless


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ra-view", description="Help someone who invited "
                                     "you: open their invitation and see their screen.")
    parser.add_argument("ticket", metavar="TICKET.rainvite", help="the invitation file")
    parser.add_argument("--headless", action="store_true",
                        help="no window: connect, report, and optionally save a snapshot")
    headless.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.headless:
        return headless.main(args)
    print("ra-view: the window is not part of this version yet; use --headless",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
