"""Errors a user can act on (the CLI prints each as one line, without a traceback), and how
an error message shows a bad value: bounded, on one line."""

from __future__ import annotations

import re
import reprlib
from collections.abc import Collection
from typing import Any

PREVIEW_CHARS = 80  # a bad value is shown cut to this, never whole (a 50 MB list would be)


class UserError(Exception):
    """Bad input or configuration, with a message saying what and where (every error a user
    can act on is one, so the CLI prints its message alone)."""


def describe_error(err: dict[str, Any], option: bool = False, fields: Collection[str] = ()) -> str:
    """One pydantic error as `key: message (got value)`, or with `option` as the command-line
    option that set it: `--key value: message`. A message that starts with one of `fields`
    (a check naming its own keys) is shown as it is."""
    loc = [shorten(str(p), PREVIEW_CHARS // 2) for p in err["loc"]]  # keys come from the file too
    # pydantic names the union member it tried ("space.lr.int.low"): drop that noise
    loc = [p for p in loc if p not in {"int", "float", "categorical", "IntParam", "FloatParam",
                                       "CategoricalParam"} and not p.startswith("function-")]
    message = shorten(err["msg"].removeprefix("Value error, "), 25 * PREVIEW_CHARS)  # ours, but keys may be in it
    got = err.get("input")
    shown = "" if isinstance(got, dict) or err["type"] in ("missing", "value_error") else f" (got {preview(got)})"
    if not loc or re.match(r"\w*", message)[0] in fields:  # a cross-field check: its message starts with the key
        return message
    if option:
        return f"--{'-'.join(loc).replace('_', '-')} {shorten(str(got))}: {message}"  # refit.seeds: --refit-seeds
    return f"{'.'.join(loc)}: {message}{shown}"


def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother = 3, PREVIEW_CHARS, PREVIEW_CHARS
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 8
    return r


_REPR = _bounded_repr()


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """`repr(value)` cut to `limit` characters, in time and memory bounded whatever the value
    (reprlib looks at a few items of each level only): how an error shows a bad value."""
    return shorten(_REPR.repr(value), limit)


def shorten(text: str, limit: int = PREVIEW_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with '...' where it was cut."""
    text = " ".join(text[:limit + 1].split()) if len(text) > limit else " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
