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
from typing import Any

from signlab import config

CLEANUP_SECONDS = 20  # after Ctrl-C or SIGTERM, the process exits within this, cleaned up or not


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
    if config.verbose():  # where the clean-up was stuck, for a bug report
        import faulthandler

        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    os._exit(128 + signum)


def interrupted_line(exc: KeyboardInterrupt) -> str:
    """What was interrupted and the state it was left in, from the notes the clean-up added."""
    what = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT (Ctrl-C)"
    notes = getattr(exc, "__notes__", [])
    return f"interrupted by {what}" + (": " + "; ".join(notes) if notes else "")
