"""Errors a user can act on: the CLI prints their message alone, without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

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


def describe_error(err: dict[str, Any], option: bool = False) -> str:
    """One pydantic error as `key: message (got value)`, or with `option` as the command-line
    option that set it: `--key value: message`."""
    loc = [str(p) for p in err["loc"]]
    # pydantic names the union member it tried ("space.lr.int.low"): drop that noise
    loc = [p for p in loc if p not in {"int", "float", "categorical", "IntParam", "FloatParam",
                                       "CategoricalParam"} and not p.startswith("function-")]
    message = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
    if not loc:  # a cross-field check: its message starts with the key
        return message
    if option:
        return f"--{loc[0].replace('_', '-')} {got}: {message}"
    return f"{'.'.join(loc)}: {message}{shown}"
