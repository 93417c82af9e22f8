"""Errors a user can act on, and interrupts: the CLI prints one line for each, without a
traceback."""

from __future__ import annotations

import functools
import os
import re
import reprlib
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import typer

P = ParamSpec("P")
R = TypeVar("R")
CLEANUP_SECONDS = 20  # after Ctrl-C or SIGTERM, the process exits within this, cleaned up or not
PREVIEW_CHARS = 80  # a bad value is shown cut to this, never whole (a 50 MB list would be)


class UserError(Exception):
    """Bad input or configuration, with a message saying what and where (every error a user
    can act on is one, so the CLI prints its message alone)."""


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM; a KeyboardInterrupt, so runs end KILLED and Optuna fails the trial."""


class _Held:
    """Holds on interrupts (nested) and the signal that arrived meanwhile."""

    depth = 0
    pending: int | None = None


def _in_main_thread() -> bool:
    """Python runs signal handlers in the main thread only: holds and handlers live there."""
    return threading.current_thread() is threading.main_thread()


def hold_interrupts() -> None:
    """From now until the matching `release_interrupts`, a SIGINT/SIGTERM that
    `signals_as_interrupts` would raise waits (a run being created, say, must not be left
    half made). Signals reach Python's handler in the main thread whatever thread the OS
    gave them to, so this is done there rather than with the thread's signal mask; in other
    threads (a server's) holds do nothing."""
    if _in_main_thread():
        _Held.depth += 1


def release_interrupts() -> None:
    """End a hold; the last one raises the interrupt that arrived while held, if any."""
    if not _in_main_thread():
        return
    _Held.depth = max(0, _Held.depth - 1)
    if _Held.depth == 0:
        raise_held_interrupt()


def raise_held_interrupt() -> None:
    """Raise now, inside a hold, the interrupt that arrived while held, if any: a safe point
    in held work (between two training batches, say)."""
    if _Held.pending is not None and _in_main_thread():
        signum, _Held.pending = _Held.pending, None
        raise _interrupt(signum)


@contextmanager
def held_interrupts() -> Iterator[None]:
    """`hold_interrupts` for the block; the interrupt held meanwhile is raised at its end."""
    hold_interrupts()
    try:
        yield
    finally:
        release_interrupts()


def _interrupt(signum: int) -> KeyboardInterrupt:
    return Terminated(f"signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """While a command runs, SIGTERM raises `Terminated` and Ctrl-C `KeyboardInterrupt` in the
    main thread, so `finally` blocks end runs KILLED. Later signals are ignored, so they cannot
    cut that clean-up short (`mlflow run` sends SIGTERM right after the terminal's Ctrl-C);
    a clean-up that takes more than CLEANUP_SECONDS is abandoned and the process exits."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received:
            return
        received.append(signum)
        watchdog = threading.Timer(CLEANUP_SECONDS, _give_up, args=(signum,))
        watchdog.daemon = True  # a process that cleaned up in time exits without waiting for it
        watchdog.start()
        if _Held.depth:
            _Held.pending = signum
            return
        raise _interrupt(signum)

    if not _in_main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if not received:  # after a signal, later ones stay ignored until the process exits
            for sig, old in previous.items():
                signal.signal(sig, old)


def _give_up(signum: int) -> None:
    print(f"error: clean-up after {signal.Signals(signum).name} took over {CLEANUP_SECONDS} s; exiting "
          "without it (runs not yet ended stay RUNNING)", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def interrupted_line(exc: KeyboardInterrupt) -> str:
    """What was interrupted and the state it was left in, from the notes the clean-up added."""
    what = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT (Ctrl-C)"
    notes = getattr(exc, "__notes__", [])
    return f"interrupted by {what}" + (": " + "; ".join(notes) if notes else "")


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
