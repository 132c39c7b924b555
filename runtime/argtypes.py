"""Argument types for the ``tierpipe`` command: a bad value is one line naming the flag and the fix."""

from __future__ import annotations

import argparse
import math
import sys

__all__ = ["add_view_args", "Parser", "input_shape", "positive", "non_negative", "positive_int", "non_negative_int", "port"]


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, unless the help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (``error: ...; see tierpipe CMD --help``), exit status 2, and
    the defaults in the help (sub-commands too)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        sys.stderr.write(f"error: {message}; see `{self.prog} --help`\n")
        sys.exit(2)


def add_view_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--view``, ``--view-port``, ``--view-host``: the live web page, on loopback unless told otherwise."""
    p.add_argument("--view", action="store_true", help=f"serve a live web page of {what}; it stays up at the end until Ctrl-C")
    p.add_argument("--view-port", type=lambda t: _int(t, 0, 65535), default=8765, help="the page's port (0: any free port)")
    p.add_argument(
        "--view-host", default="127.0.0.1", help="where the page listens; anything but loopback exposes it to the network, unauthenticated"
    )


def input_shape(text: str) -> list[int]:
    try:
        dims = [int(x) for x in text.replace("x", ",").split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write it like 1,3,224,224") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r}: every dimension must be a whole number >= 1, e.g. 1,3,224,224")
    return dims


def _float(text: str, zero_ok: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number {'>=' if zero_ok else '>'} 0")
    return value


def positive(text: str) -> float:
    return _float(text, zero_ok=False)


def non_negative(text: str) -> float:
    return _float(text, zero_ok=True)


def _int(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from {low}" + (f" to {high}" if high else " up"))
    return value


def positive_int(text: str) -> int:
    return _int(text, 1)


def non_negative_int(text: str) -> int:
    return _int(text, 0)


def port(text: str) -> int:
    return _int(text, 1, 65535)


def pack(text: str) -> str | int:
    """``--pack``: auto, node, tier, or a number of processes (>= 1)."""
    if text in ("auto", "node", "tier"):
        return text
    try:
        return _int(text, 1)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: give auto, node, tier or a number of processes (1 or more)") from None
