"""Middlebury flow ("other" set) and 2001 stereo evaluation: ``flowlib evaluate middlebury``.

    python -m benchmarks.middlebury [--flow-root PATH] [--stereo-root PATH]
        [--stereo-model M] [--stereo-weights W] [--json OUT] [--save-viz DIR] [--resume]

Takes every flag of ``flowlib evaluate middlebury`` (``flowlib evaluate --help``); without a root it
runs on a small synthetic set in the official layout (its tables say SYNTHETIC).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from flowlib import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["evaluate", "middlebury", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
