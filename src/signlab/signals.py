"""Ctrl-C and SIGTERM as Python exceptions while a command runs, holds that keep a signal out
of work that must not be cut (a run being created), and a watchdog that ends a clean-up that
takes too long. The process-wide signal state lives here and nowhere else."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from signlab import config

CLEANUP_SECONDS = 20  # after Ctrl-C or SIGTERM, the process exits within this, cleaned up or not
# Library code an exception must not cut, held or not: a store's transaction (SQLAlchemy and
# the database drivers under MLflow's and Optuna's stores; cut, it can keep SQLite's lock, so
# that every clean-up after it waits on that lock until the watchdog gives up: measured in the
# parallel Ctrl-C test, a signal landing in a model's logging) and Optuna's making and telling
# of a trial (cut, the trial stays RUNNING; Optuna's functions for it are added by
# `search.optuna_internals`, the one place that names Optuna's internals). An interrupt that
# lands there is tried again every RETRY_SECONDS until it lands outside. Our own writes are
# held as well (`held_interrupts`).
DEFERRING_MODULES = ("sqlalchemy.", "sqlite3", "psycopg", "alembic.", "mlflow.store.tracking", "mlflow.store.db",
                     "mlflow.store.model_registry", "optuna.storages.")
RETRY_SECONDS = 0.02


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM; a KeyboardInterrupt, so runs end KILLED and Optuna fails the trial."""


class _Held:
    """Holds on interrupts (nested) and the signal that arrived meanwhile."""

    depth = 0
    pending: int | None = None
    retry_due = False  # the next call of the handler is `_retry_soon`'s, not a new signal
    # (module, function) an interrupt waits in: anywhere on the stack, or only in its own lines
    functions: set[tuple[str, str]] = set()
    own_lines: set[tuple[str, str]] = set()


def defer_interrupts_in(functions: list[tuple[str, str]], own_lines: list[tuple[str, str]]) -> None:
    """Add library functions, as (module, function), that an interrupt must not cut: while one
    of `functions` is anywhere on the stack, or while one of `own_lines` runs its own lines
    (not a function it called)."""
    _Held.functions.update(functions)
    _Held.own_lines.update(own_lines)


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
    a clean-up that takes more than CLEANUP_SECONDS is abandoned and the process exits.

    The interrupt waits where raising it would cut work that must not be cut (a hold of ours,
    a library's store transaction) and is tried again where Python would drop it (a finaliser)."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        retry, _Held.retry_due = _Held.retry_due, False
        if retry:
            if _Held.pending is None:  # raised meanwhile, where a hold ended
                return
        elif received:
            return
        else:
            received.append(signum)
            watchdog = threading.Timer(CLEANUP_SECONDS, _give_up, args=(signum,))
            watchdog.daemon = True  # a process that cleaned up in time exits without waiting for it
            watchdog.start()
        _Held.pending = signum
        if _Held.depth:  # raised where the hold ends
            return
        if _cuts_library_work(frame):
            _retry_soon(signum)
            return
        _Held.pending = None
        raise _interrupt(signum)

    def unraisable(info: Any) -> None:
        # Raised inside a finaliser or a weakref callback (a dict of weak references dropping
        # an entry during an import, measured), the interrupt is printed and dropped by Python,
        # and the command would go on as if never interrupted: it is kept and tried again.
        if received and isinstance(info.exc_value, KeyboardInterrupt):
            _Held.pending = received[0]
            _retry_soon(received[0])
            return
        previous_hook(info)

    if not _in_main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
        raise_held_interrupt()  # one kept until the command's end is raised here, not after it
    finally:
        if not received:  # after a signal, later ones stay ignored until the process exits
            for sig, old in previous.items():
                signal.signal(sig, old)
            sys.unraisablehook = previous_hook


def _cuts_library_work(frame: FrameType | None) -> bool:
    """Whether an exception raised at `frame` would land in library work that must not be cut
    (DEFERRING_MODULES, or the functions `defer_interrupts_in` added)."""

    def where(f: FrameType) -> tuple[str, str]:
        return f.f_globals.get("__name__", ""), f.f_code.co_name

    if frame is not None and where(frame) in _Held.own_lines:
        return True
    while frame is not None:
        module, function = where(frame)
        if module.startswith(DEFERRING_MODULES) or (module, function) in _Held.functions:
            return True
        frame = frame.f_back
    return False


def _retry_soon(signum: int) -> None:
    """Call the handler again in RETRY_SECONDS, in the main thread, for the signal it kept."""

    def retry() -> None:
        _Held.retry_due = True
        signal.pthread_kill(threading.main_thread().ident, signum)  # a real signal: it ends a sleep

    timer = threading.Timer(RETRY_SECONDS, retry)
    timer.daemon = True
    timer.start()


def _give_up(signum: int) -> None:
    print(f"error: clean-up after {signal.Signals(signum).name} took over {CLEANUP_SECONDS} s; exiting "
          "without it (runs not yet ended stay RUNNING)", file=sys.stderr, flush=True)
    if config.verbose():  # where the clean-up was stuck, for a bug report
        import faulthandler

        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    os._exit(128 + signum)


def interrupted_line(exc: KeyboardInterrupt) -> str:
    """What was interrupted and the state it was left in, from the notes the clean-up added."""
    what = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT (Ctrl-C)"
    notes = getattr(exc, "__notes__", [])
    return f"interrupted by {what}" + (": " + "; ".join(notes) if notes else "")
