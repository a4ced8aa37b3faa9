"""``argparse`` types shared by every command line in the project: flowlib's (``flowlib.cli``),
the trainer's (``python -m flowlib.train``) and the benchmark scripts'."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """``type=`` for counts and sizes: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
