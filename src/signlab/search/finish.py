"""Who does a study's work after the search (confirm runs, refits) when several workers end.

Each worker ends its search on its own (its budget, the trial cap, its timeout), and the work
after the search must be done once, by a worker that ends when no trial is running. Checking
"no trial is running" alone was not enough: two workers whose last trials ended at the same
moment both saw none running and both refit the chosen trial (a parallel quick start logged
six refit runs for three seeds). So the check and a claim are made under one lock study
(`storage.study_lock`): the first worker records on the study which trials its work is for
(`contract.POST_SEARCH_CLAIM_ATTR`: the trials it confirms, or the trial it refits) and who
it is; another worker ending while that claim stands, for the same trials, leaves the work to
it. The claim is removed when its work ends, done or interrupted, so that a resumed study can
claim again; a claim whose process is gone (killed outright, on this host) is taken over.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.storages import BaseStorage

from signlab.contract import POST_SEARCH_CLAIM_ATTR
from signlab.runs import lifecycle
from signlab.search.storage import lock_name, study_lock
from signlab.signals import held_interrupts


def claim_post_search(study: optuna.Study, storage: BaseStorage, trials: list[int],
                      by: str | None = None) -> str | None:
    """Claim the study's work after the search for `trials` (the trial numbers it is about).

    Args:
        study: the study whose search this worker has ended.
        storage: the storage the study lives in, shared by every worker (for the lock).
        trials: the trial numbers the work is for: those to confirm, or the one to refit.
        by: who claims, as `host:pid` (default: this process).

    Returns:
        None when the claim is this worker's (it does the work, then calls
        `release_post_search`); else why the work is left to another, as a line to print.
    """
    by = by or lifecycle.this_process()
    with study_lock(storage, lock_name(study.study_name, "post-search")):
        if any(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
            return "left to the workers still running trials"
        claim = study.user_attrs.get(POST_SEARCH_CLAIM_ATTR) or {}
        # a claim from another host is taken for alive: if killed outright, `signlab study refit` does the refit
        if claim.get("trials") == trials and claim.get("by") != by and not lifecycle.gone(claim.get("by", "")):
            return f"left to {claim['by']}, which is doing it for trials {trials}"
        study.set_user_attr(POST_SEARCH_CLAIM_ATTR, {"trials": trials, "by": by})
    return None


def release_post_search(study: optuna.Study, by: str | None = None) -> None:
    """Remove this worker's claim (one another worker has since made is kept)."""
    by = by or lifecycle.this_process()
    with held_interrupts():  # a claim half-removed is still a claim; let the write finish
        if (study.user_attrs.get(POST_SEARCH_CLAIM_ATTR) or {}).get("by") == by:
            study.set_user_attr(POST_SEARCH_CLAIM_ATTR, None)


@contextmanager
def post_search_work(study: optuna.Study, storage: BaseStorage, trials: list[int]) -> Iterator[str | None]:
    """`claim_post_search` for the body, released when the body ends however it ends; yields
    None when this worker is to do the work (or there is none: no `trials`), else why not."""
    if not trials:  # no confirm, no refit: nothing to claim
        yield None
        return
    refused = claim_post_search(study, storage, trials)
    try:
        yield refused
    finally:
        if refused is None:
            release_post_search(study)

