"""`ra-view`: the expert's side."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("ra-view: the viewer is not part of this version yet; `ra-bench codec` measures "
          "the streaming codec.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
