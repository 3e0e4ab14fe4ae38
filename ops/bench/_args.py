"""Argument types the benchmarks' command lines share."""

from __future__ import annotations

import argparse


def positive(value: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n
