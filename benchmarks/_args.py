"""Argument types of the benchmark scripts' command lines."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from flowlib._argtypes import positive_int


def output_file(*suffixes: str) -> Callable[[str], str]:
    """``type=`` for an output file whose extension must be one of ``suffixes``."""

    def check(text: str) -> str:
        if Path(text).suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{text}: expected a {' or '.join(suffixes)} file")
        return text

    check.__name__ = "output file"
    return check
