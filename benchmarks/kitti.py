"""KITTI 2012/2015 flow and stereo evaluation and submission: ``flowlib evaluate kitti``.

    python -m benchmarks.kitti [--root KITTI2015/] [--task flow|stereo|both] [--year 2015|2012]
        [--stereo-model M] [--stereo-weights W] [--split training|testing]
        [--submission DIR [--zip]] [--json OUT] [--save-viz DIR] [--resume] [--limit N]

Takes every flag of ``flowlib evaluate kitti`` (``flowlib evaluate --help``); without a root it
runs on a small synthetic set in the official layout (its tables say SYNTHETIC).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from flowlib import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["evaluate", "kitti", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
