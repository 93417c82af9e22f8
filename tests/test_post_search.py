"""The work after a study's search (confirm runs, refits) is done once when several workers end
together: the claim made under a lock study (`signlab.search.finish`). Real SQLite storage;
the workers are stood in for by `host:pid` names of real processes, live or gone."""

from __future__ import annotations

import socket
import subprocess
import sys

import optuna
import pytest

from signlab.contract import POST_SEARCH_CLAIM_ATTR
from signlab.search.finish import claim_post_search, post_search_work, release_post_search
from signlab.search.storage import open_storage

HOST = socket.gethostname()


@pytest.fixture
def storage(tmp_path):
    return open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")


@pytest.fixture
def study(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    study.add_trial(optuna.trial.create_trial(value=1.0))
    study.add_trial(optuna.trial.create_trial(value=2.0))
    return study


@pytest.fixture
def live_worker():
    """`host:pid` of a process that stays alive through the test: another worker at work."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield f"{HOST}:{proc.pid}"
    proc.kill()
    proc.wait()


def gone_worker() -> str:
    """`host:pid` of a process that has ended: a worker killed outright mid-refit."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{HOST}:{proc.pid}"


def test_two_workers_ending_together_refit_once(study, storage, live_worker):
    assert claim_post_search(study, storage, [0], by=live_worker) is None, "the first worker to end claims"
    refused = claim_post_search(study, storage, [0])  # this process: the second worker, a moment later
    assert refused == f"left to {live_worker}, which is doing it for trials [0]"
    assert study.user_attrs[POST_SEARCH_CLAIM_ATTR] == {"trials": [0], "by": live_worker}, "the claim stands"


def test_a_claim_is_released_when_its_work_ends_so_a_resume_claims_again(study, storage, live_worker):
    with post_search_work(study, storage, [0]) as elsewhere:
        assert elsewhere is None
        assert claim_post_search(study, storage, [0], by=live_worker) is not None, "held while the work runs"
    assert study.user_attrs[POST_SEARCH_CLAIM_ATTR] is None
    with pytest.raises(KeyboardInterrupt), post_search_work(study, storage, [0]):
        raise KeyboardInterrupt  # Ctrl-C during the refit: released all the same
    assert study.user_attrs[POST_SEARCH_CLAIM_ATTR] is None
    assert claim_post_search(study, storage, [0], by=live_worker) is None


def test_another_workers_claim_is_not_released_by_this_one(study, storage, live_worker):
    assert claim_post_search(study, storage, [0], by=live_worker) is None
    release_post_search(study)  # this process never claimed
    assert study.user_attrs[POST_SEARCH_CLAIM_ATTR]["by"] == live_worker


def test_a_claim_whose_worker_is_gone_is_taken_over(study, storage):
    assert claim_post_search(study, storage, [0], by=gone_worker()) is None
    assert claim_post_search(study, storage, [0]) is None, "its process ended: the work is this worker's"


def test_a_claim_for_other_trials_does_not_stop_this_one(study, storage, live_worker):
    """A worker's last trial became the choice after another had claimed the refit of the old one."""
    assert claim_post_search(study, storage, [0], by=live_worker) is None
    assert claim_post_search(study, storage, [1]) is None


def test_no_claim_while_a_trial_runs(study, storage):
    study.ask()  # another worker's trial, RUNNING
    assert claim_post_search(study, storage, [0]) == "left to the workers still running trials"
    assert POST_SEARCH_CLAIM_ATTR not in study.user_attrs


def test_nothing_is_claimed_when_there_is_no_work_after_the_search(study, storage, live_worker):
    assert claim_post_search(study, storage, [0], by=live_worker) is None
    with post_search_work(study, storage, []) as elsewhere:  # a study without refit or confirm
        assert elsewhere is None
    assert study.user_attrs[POST_SEARCH_CLAIM_ATTR]["by"] == live_worker, "another's claim untouched"
