"""How a `signlab` command ends on a mistake or a signal: one line on stderr and the exit code
a shell expects, never a traceback. The only module below the CLI that needs Typer."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from signlab.errors import UserError
from signlab.signals import Terminated, interrupted_line, signals_as_interrupts

P = ParamSpec("P")
R = TypeVar("R")


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn user errors into one line on stderr and exit code 2, and Ctrl-C or SIGTERM into
    one line and exit code 130 or 143 (128 + the signal's number, as shells report it)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with signals_as_interrupts():
                return func(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:
            print(interrupted_line(exc), file=sys.stderr, flush=True)
            raise typer.Exit(128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)) from None

    return wrapper
