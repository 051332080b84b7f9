"""Argument types shared by visnet's command lines."""

from __future__ import annotations

import argparse
import json
import os
import sys


def int_list(text: str, minimum: int = 1) -> tuple[int, ...]:
    """Comma-separated integers >= `minimum` as an argparse type (`counts` allows 0)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < minimum:
        kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return values


def counts(text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 0 (e.g. numbers of layers to remove)."""
    return int_list(text, minimum=0)


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


def share(text: str) -> float:
    """A number in (0, 1), a share of the squared distance, as an argparse type."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1). Received: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1). Received: {text!r}")
    return value


def add_imagenet_classes(parser: argparse.ArgumentParser) -> None:
    """`--imagenet-share S` and `--imagenet-size HxW`: the ImageNet class embedding beside a run's
    (`visnet.models.imagenet_classes`); read them with `imagenet_classes(args)`."""
    parser.add_argument("--imagenet-share", type=share, metavar="S",
                        help="add the ImageNet class embedding of the offline EfficientNet-Lite0 trunk (the square "
                             "roots of its 1,000 class probabilities) beside the run's, with this share (0-1) of the "
                             "squared distance; the fashion benchmark's held-out base classes chose 0.6 (README, "
                             "\"ImageNet classes beside the embedding\"). It runs the trunk a second time per photo")
    parser.add_argument("--imagenet-size", type=size, metavar="HxW",
                        help="with --imagenet-share: the input size the ImageNet classifier sees, the photo resized "
                             "inside the model (default: the run's input size; the classifier ranks best near 288x216 on "
                             "the fashion benchmark)")


def imagenet_classes(args: argparse.Namespace):
    """The `ImageNetClasses` of `--imagenet-share` / `--imagenet-size`, or None."""
    share_value, image_size = getattr(args, "imagenet_share", None), getattr(args, "imagenet_size", None)
    if share_value is None:
        if image_size is not None:
            raise ValueError(f"--imagenet-size applies with --imagenet-share. Received: --imagenet-size "
                             f"{image_size[0]}x{image_size[1]} alone")
        return None
    from visnet.models.imagenet_classes import ImageNetClasses

    try:
        return ImageNetClasses(share_value, image_size)
    except ValueError as error:
        raise ValueError(f"--imagenet-size: {error}") from None


def expansion(text: str):
    """qe=K,dba=K,alpha=A (`visnet.index.expansion.Expansion`) as an argparse type."""
    from visnet.index.expansion import Expansion

    try:
        return Expansion.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def check_grid_args(args: argparse.Namespace, positive: tuple[str, ...] = ("queries", "episodes", "batch_size")) -> None:
    """The checks every few-shot grid command shares: counts >= 1, ways >= 2, `--out` a file prefix."""
    import os

    for flag in positive:
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1. Received: {getattr(args, flag)}")
    ways = args.ways if isinstance(args.ways, (tuple, list)) else (args.ways,)
    if min(ways) < 2:
        raise ValueError(f"--ways must be >= 2. Received: {args.ways}")
    if os.path.isdir(args.out):
        raise ValueError(f"--out is a prefix for files, not a directory. Received: {args.out}")


def closed_output() -> int:
    """For a command whose reader closed its standard output early (`python -m visnet.tag ... | head`):
    not an error worth a message; the rest of the output goes nowhere. Returns exit code 1."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush does not fail again
    os.close(devnull)
    return 1


def report_error(error: BaseException) -> int:
    """Prints `error: MESSAGE` on stderr (a KeyError's message without its quotes); returns exit code 2."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    print(f"error: {message}", file=sys.stderr)
    return 2
