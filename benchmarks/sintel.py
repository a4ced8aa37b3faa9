"""MPI-Sintel evaluation and submission: ``flowlib evaluate sintel``.

    python -m benchmarks.sintel [--root MPI-Sintel/] [--pass clean final] [--split training|test]
        [--submission DIR [--zip]] [--json OUT] [--save-viz DIR] [--resume] [--limit N]

Takes every flag of ``flowlib evaluate sintel`` (``flowlib evaluate --help``); without a root it
runs on a small synthetic set in the official layout (its tables say SYNTHETIC).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from flowlib import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["evaluate", "sintel", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
