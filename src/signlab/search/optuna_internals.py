"""Every use signlab makes of Optuna's private API, in one place, with the version it was
checked against (`tests/test_structure.py` checks that these names still exist in the Optuna
installed): an upgrade of Optuna that moves them fails there, not in a study.

- `RDBStorage._create_new_trial`: the one method RDBStorage and Optuna's cache in front of it
  call to make a trial; `CappedStorage` counts and creates under one lock there.
- `optuna.study._optimize`: the logger Optuna reports failed trials with (`OPTIMIZE_LOGGER`).
- `HyperbandPruner._get_bracket_id`: the bracket of a trial, from a hash of the study's name
  and the trial's number; `SeededHyperband` gives it the key the study stores instead.
- `optuna.study._optimize._run_trial` and `optuna.study._tell._tell_with_warning`: where a
  trial has been made and not yet told; a Ctrl-C waits until they are done (`signals`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from types import SimpleNamespace
from typing import Any

import optuna.study._optimize
import optuna.study._tell
from optuna.pruners import HyperbandPruner
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from signlab.contract import BRACKETS_ATTR
from signlab.signals import defer_interrupts_in

CHECKED_WITH = "optuna 5.0"
OPTIMIZE_LOGGER = optuna.study._optimize.__name__  # where Optuna logs "Trial N failed"
# Between Optuna making a trial and telling its end: cut there, the trial stays RUNNING. The
# objective runs inside `_run_trial`, so only its own lines wait.
TELL = (optuna.study._tell.__name__, optuna.study._tell._tell_with_warning.__name__)
RUN_TRIAL = (optuna.study._optimize.__name__, optuna.study._optimize._run_trial.__name__)
defer_interrupts_in(functions=[(f.__module__, f.__name__) for f in (optuna.Study.ask, optuna.Study.tell)] + [TELL],
                    own_lines=[RUN_TRIAL])

TrialLock = Callable[[RDBStorage, str], AbstractContextManager[Any]]  # (storage, study name) -> held lock


class TrialCapReached(Exception):
    """No trial was made: the study already holds as many trials as its cap."""


class CappedStorage(RDBStorage):
    """RDBStorage that makes no trial past `cap` (trials of every state, all workers together).

    Optuna's MaxTrialsCallback counts when a trial ends, so two workers ending trials at the
    same moment both start one more and the study overshoots its cap. Here the count and the
    new trial are made under one lock per study (`trial_lock`) instead, so the last slot goes
    to one worker; the others get TrialCapReached out of `study.optimize`. Optuna has no hook
    between its count and its insert, so this overrides the private `_create_new_trial`.

    Args:
        url: the storage's SQLAlchemy URL.
        cap: the most trials the study may hold; None for no cap.
        trial_lock: holds a lock shared by every worker while a trial is counted and made.
        **kwargs: RDBStorage's own (heartbeats, engine settings).
    """

    def __init__(self, url: str, *, cap: int | None = None, trial_lock: TrialLock | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        if cap is not None and trial_lock is None:
            raise ValueError("a cap needs a trial_lock shared by every worker")
        self.cap, self.trial_lock = cap, trial_lock

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        if self.cap is None or self.trial_lock is None or template_trial is not None:  # a template: enqueued or retried
            return super()._create_new_trial(study_id, template_trial)
        with self.trial_lock(self, self.get_study_name_from_id(study_id)):
            if self.get_n_trials(study_id) >= self.cap:
                raise TrialCapReached(f"the study holds its {self.cap} trials")
            return super()._create_new_trial(study_id)


class SeededHyperband(HyperbandPruner):
    """Optuna's Hyperband, each trial's bracket drawn from the key its study stores
    (`contract.BRACKETS_ATTR`, "seed-<study seed>") and the trial's number.

    Optuna draws it from the study's name (`crc32("<name>_<number>")`), so two studies seeded
    alike but named apart prune different trials, and their samplers go on from different
    histories: the default study at seed 7 chose a trial at 99.79% test under one name and one
    at 99.05% under another (docs/results.md). A study stored by an earlier signlab has no key
    and keeps Optuna's brackets from its name, so a resumed study prunes as it did.

    Args:
        **kwargs: HyperbandPruner's own (min_resource, max_resource, reduction_factor).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keys: dict[str, str] = {}  # study name -> its bracket key, read once per process

    def _get_bracket_id(self, study: Any, trial: FrozenTrial) -> int:
        name = study.study_name
        if name not in self._keys:
            self._keys[name] = study.user_attrs.get(BRACKETS_ATTR, name)
        return super()._get_bracket_id(SimpleNamespace(study_name=self._keys[name]), trial)  # reads only the name
