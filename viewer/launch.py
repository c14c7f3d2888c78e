"""`ra-share`: the novice panel when it is run bare on a desktop, the command line otherwise.

Qt is imported only for the panel, so `ra-share invite`, `status` or `serve` start fast and
work where no Qt library can load.
"""

from __future__ import annotations

import os
import sys

from engine import cli

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        return cli.main(args)
    if not os.environ.get("DISPLAY"):
        print("ra-share: without a command ra-share opens its window, which needs a desktop "
              "($DISPLAY); on a terminal use a command such as `ra-share serve` (see "
              "ra-share --help)", file=sys.stderr)
        return 2
    try:
        name, port = cli.novice_defaults()
    except cli.USER_ERRORS as exc:
        print(f"ra-share: {exc}", file=sys.stderr)
        return 1
    from viewer.novice import run_panel

    return run_panel(name=name, port=port)


if __name__ == "__main__":
    sys.exit(main())
