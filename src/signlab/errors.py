"""Errors a user can act on: the CLI prints their message alone, without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from signlab.data import DataFileError, DataFileNotFound

P = ParamSpec("P")
R = TypeVar("R")


class UserError(Exception):
    """Bad input or configuration, with a message saying what and where."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types whose message is the whole story for a user."""
    from signlab.classifier import PayloadError
    from signlab.fetch import FetchError

    return (UserError, DataFileError, DataFileNotFound, FetchError, PayloadError)


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn user errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except user_error_types() as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper
