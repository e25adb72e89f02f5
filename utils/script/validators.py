"""Checks of numbers a user gives: argparse types for command-line options (`positive_int`, ...), the same check
for values passed in code (`require_positive_int`), and header values read leniently (`positive_or_none`)."""
import argparse
import math

import numpy as np


def _integer(text, minimum):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text):
    return _integer(text, 1)


def non_negative_int(text):
    return _integer(text, 0)


def _number(text, minimum, inclusive):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
        raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if inclusive else '>'} {minimum:g}, "
                                         f"got {text}")
    return value


def positive_float(text):
    return _number(text, 0.0, inclusive=False)


def non_negative_float(text):
    return _number(text, 0.0, inclusive=True)


def require_positive_int(name: str, value) -> int:
    """`value` as an int, or a ValueError naming `name` unless it is a positive int (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def positive_or_none(value) -> float | None:
    """A header value (number or text) as a positive finite float, else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
