"""Optuna storage: any SQLAlchemy URL, heartbeats on, passwords never shown."""

from __future__ import annotations

import re
import warnings

import optuna
from optuna.storages import RDBStorage, RetryFailedTrialCallback

from signlab.errors import UserError

HEARTBEAT_SECONDS = 15  # a live trial beats this often...
GRACE_SECONDS = 60  # ...and is marked FAIL when silent this long (its worker died)


def redact(url: str) -> str:
    """A URL with its password replaced by ***."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str, retries: int = 0) -> RDBStorage:
    """An RDBStorage with heartbeats; a trial whose worker died is failed (and retried
    `retries` times). Errors name the URL without its password and say nothing changed."""
    callback = RetryFailedTrialCallback(max_retry=retries) if retries else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own summary says what happened
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                              failed_trial_callback=callback)
    except Exception as exc:  # SQLAlchemy raises many kinds: bad URL, driver, connection
        reason = redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        raise UserError(
            f"cannot open study storage {redact(url)}: {reason}. Nothing was changed."
        ) from None

