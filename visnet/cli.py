"""Argument types shared by visnet's command lines."""

from __future__ import annotations

import argparse
import json
import sys


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def name_list(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values


def key_value(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON (numbers, lists), yes/no/true/false, or a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    words = {"true": True, "yes": True, "false": False, "no": False}
    if value.lower() in words:
        return key.replace("-", "_"), words[value.lower()]
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def size(text: str) -> tuple[int, int]:
    """HEIGHTxWIDTH as an argparse type."""
    from visnet.data.image_spec import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def report_error(error: BaseException) -> int:
    """Prints `error: MESSAGE` on stderr (a KeyError's message without its quotes); returns exit code 2."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    print(f"error: {message}", file=sys.stderr)
    return 2
