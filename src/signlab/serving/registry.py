"""Promotion through the MLflow model registry, with aliases (stages are deprecated).

A run's `classifier` model becomes a new version of `sign-mnist-cnn` or `sign-mnist-mlp`.
The alias `champion` moves to it only if it beats the current champion on test accuracy
(ties: macro F1, then fewer parameters), or with force; the old champion keeps `previous`;
a losing candidate gets `challenger`. The evidence is kept as tags on the version.
Promoting the same run again changes nothing. `promote` also prints the candidate against the
champion on the same test images (`signlab.serving.evidence`): the difference with its paired
interval over photos and a verdict. The gate stays on the point figures: a difference it
cannot measure ("no measurable difference") still moves the alias, and the line says so.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from signlab.contract import (
    CHALLENGER,
    CHAMPION,
    CLASSIFIER_URI_TAG,
    FAMILY_TAG,
    MODEL_NAMES,
    N_PARAMS,
    PRESET_TAG,
    REFERENCE_ROW_TAG,
    REFIT_PRIMARY_TAG,
    SOURCE_RUN_TAG,
    SOURCE_VAL_ACCURACY,
    STUDY_TAG,
    TEST_ACCURACY,
    TEST_AUG_ACCURACY,
    TEST_F1,
    TRIAL_NUMBER_TAG,
    VAL_ACCURACY,
    VAL_AUG_ACCURACY,
    metric_key,
    tag_key,
)
from signlab.errors import UserError
from signlab.stores import redact

EVIDENCE = (TEST_ACCURACY, TEST_F1, N_PARAMS, VAL_ACCURACY, TEST_AUG_ACCURACY)


@dataclass
class Verdict:
    """What a promotion did."""

    model: str
    version: str
    run_id: str
    outcome: str  # CHAMPION, CHALLENGER, "unchanged"
    message: str


def best_run(client: MlflowClient, family: str, experiment: str | None = None) -> Run:
    """The model users get for `family`: the primary refit (`signlab.search.refit`) of the study
    trial with the best validation accuracy, where refits exist; else the finished run with
    a logged classifier and the best validation accuracy (ties: the perturbed validation
    copy's accuracy, then fewer parameters). Never test."""
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise UserError(f"no experiment named {experiment!r} at {redact(mlflow.get_tracking_uri())}")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    refits = client.search_runs(
        ids, filter_string=f"{tag_key(FAMILY_TAG)} = '{family}' and attributes.status = 'FINISHED' "
                           f"and {tag_key(REFIT_PRIMARY_TAG)} = 'true' and {metric_key(SOURCE_VAL_ACCURACY)} >= 0",
        order_by=[f"{metric_key(SOURCE_VAL_ACCURACY)} DESC", f"{metric_key(N_PARAMS)} ASC"], max_results=50)
    refits = [r for r in refits if CLASSIFIER_URI_TAG in r.data.tags]
    if refits:
        return refits[0]
    runs = client.search_runs(
        ids, filter_string=f"{tag_key(FAMILY_TAG)} = '{family}' and attributes.status = 'FINISHED' "
                           f"and {metric_key(VAL_ACCURACY)} >= 0",
        order_by=[f"{metric_key(VAL_ACCURACY)} DESC", f"{metric_key(VAL_AUG_ACCURACY)} DESC",
                  f"{metric_key(N_PARAMS)} ASC"], max_results=50)
    runs = [r for r in runs if CLASSIFIER_URI_TAG in r.data.tags]
    if not runs:
        raise UserError(f"no finished {family} run with a logged classifier at {redact(mlflow.get_tracking_uri())}")
    return runs[0]


def _score(metrics: dict[str, float]) -> tuple[float, float, float]:
    """Higher is better: test accuracy, then macro F1, then fewer parameters."""
    return (metrics.get(TEST_ACCURACY, 0.0), metrics.get(TEST_F1, 0.0), -metrics.get(N_PARAMS, float("inf")))


def _version_metrics(version: ModelVersion) -> dict[str, float]:
    return {k: float(version.tags[k]) for k in EVIDENCE if k in version.tags}


def gate_score(version: ModelVersion) -> tuple[float, float, float]:
    """The registry gate's order for a model version, from the evidence tags `promote` wrote:
    a challenger takes the champion's place only if its score is higher (a tie keeps the
    champion). Higher is better: test accuracy, then macro F1, then fewer parameters."""
    return _score(_version_metrics(version))


def _missing(exc: MlflowException) -> bool:
    """Whether MLflow said "no such run, model or version", by its error code (anything else,
    a server hiccup say, is raised: read as "none", it could register a duplicate version)."""
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version `alias` points to, or None. Read from the model's aliases: MLflow reports a
    missing alias with the code of any bad parameter (INVALID_PARAMETER_VALUE), so catching
    that could hide a real error."""
    try:
        versions = client.get_registered_model(name).aliases
    except MlflowException as exc:
        if _missing(exc):
            return None
        raise
    return client.get_model_version(name, str(versions[alias])) if alias in versions else None


def promote(run_id: str, force: bool = False, client: MlflowClient | None = None,
            trust_model: bool = False) -> Verdict:
    """Register `run_id`'s classifier (once) and move the aliases by the gate.

    Args:
        run_id: a FINISHED run with a letters classifier (a refit, trial or reference run).
        force: move `champion` to it whatever the gate says.
        client: the MLflow client (default: the tracking URI's).
        trust_model: register a classifier whose loading could run code from the store
            (`predict.check_classifier` refuses it otherwise, before anything is registered).

    Returns:
        The registered version, whether it became champion, and why.
    """
    client = client or MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if not _missing(exc):
            raise
        raise UserError(f"no run {run_id!r} at {redact(mlflow.get_tracking_uri())}") from None
    family = run.data.tags.get(FAMILY_TAG)
    uri = run.data.tags.get(CLASSIFIER_URI_TAG)
    if family not in MODEL_NAMES or not uri or run.info.status != "FINISHED":
        raise UserError(f"run {run_id} is not a finished signlab training run with a logged classifier")
    if not trust_model:
        from signlab.serving.predict import check_classifier

        check_classifier(uri)
    name = MODEL_NAMES[family]
    version = _existing_version(client, name, run_id) or _register(client, name, uri, run)
    candidate = _version_metrics(version)
    champion = _alias(client, name, CHAMPION)
    paired = "" if champion is None or champion.version == version.version else _paired(client, run, champion)
    if champion is not None and champion.version == version.version:
        return Verdict(name, version.version, run_id, "unchanged",
                       f"{name} v{version.version} (run {run_id}) is already the champion; nothing changed")
    if champion is None or force or _score(candidate) > gate_score(champion):
        if champion is not None:
            client.set_registered_model_alias(name, "previous", champion.version)
        client.set_registered_model_alias(name, CHAMPION, version.version)
        client.set_model_version_tag(name, version.version, "verdict", CHAMPION + (" (forced)" if force else ""))
        old_accuracy = float("nan") if champion is None else _version_metrics(champion).get(TEST_ACCURACY, float("nan"))
        held = "" if champion is None else f"; v{champion.version} (test accuracy {old_accuracy:.4f}) is now 'previous'"
        return Verdict(name, version.version, run_id, CHAMPION,
                       f"{name} v{version.version} is the champion: test accuracy "
                       f"{candidate.get(TEST_ACCURACY, float('nan')):.4f}{' (forced)' if force else ''}{held}{paired}")
    current = _version_metrics(champion)
    if (challenger := _alias(client, name, CHALLENGER)) is not None and challenger.version == version.version:
        return Verdict(name, version.version, run_id, "unchanged",
                       f"{name} v{version.version} is already the challenger; nothing changed")
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    client.set_model_version_tag(name, version.version, "verdict", CHALLENGER)
    return Verdict(name, version.version, run_id, CHALLENGER,
                   f"{name} v{version.version} stays challenger: test accuracy {candidate.get(TEST_ACCURACY, 0):.4f} "
                   f"(macro F1 {candidate.get(TEST_F1, 0):.4f}) does not beat champion v{champion.version}'s "
                   f"{current.get(TEST_ACCURACY, 0):.4f} (macro F1 {current.get(TEST_F1, 0):.4f}); "
                   f"use --force to promote it anyway{paired}")


def _paired(client: MlflowClient, run: Run, champion: ModelVersion) -> str:
    """A second line: the candidate against the champion on the same test images, with the
    paired interval over photos and its verdict. The gate itself compares the point figures
    (a difference it cannot measure still decides); this line says how much that means."""
    from signlab.serving.evidence import EvidenceCache, compare

    source = champion.run_id or champion.tags.get(SOURCE_RUN_TAG)
    try:
        champion_run = client.get_run(source) if source else None
    except MlflowException:
        champion_run = None
    cache = EvidenceCache(client)
    found = compare(cache.evidence([run]), cache.evidence([champion_run])) if champion_run else None
    if found is None:
        return f"\nagainst champion v{champion.version}: no paired comparison (a run without test predictions)"
    return (f"\nagainst champion v{champion.version} on the same {found.n_images:,} test images ({found.n_groups} photos): "
            f"{found.text()}" + ("; the gate went by the point figures" if found.verdict.startswith("no ") else ""))


def _existing_version(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if _missing(exc):
            return None
        raise
    for version in versions:
        if version.tags.get(SOURCE_RUN_TAG) == run_id:
            return version
    return None


def _register(client: MlflowClient, name: str, uri: str, run: Run) -> ModelVersion:
    metrics = run.data.metrics
    tags = {k: str(metrics[k]) for k in EVIDENCE if k in metrics}
    tags.update({
        SOURCE_RUN_TAG: run.info.run_id, "experiment_id": run.info.experiment_id,
        STUDY_TAG: run.data.tags.get(STUDY_TAG, ""), TRIAL_NUMBER_TAG: run.data.tags.get(TRIAL_NUMBER_TAG, ""),
        PRESET_TAG: run.data.tags.get(PRESET_TAG, ""), REFERENCE_ROW_TAG: run.data.tags.get(REFERENCE_ROW_TAG, ""),
        "registered_by": getpass.getuser(), "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    tags = {k: v for k, v in tags.items() if v != ""}
    version = mlflow.register_model(uri, name, tags=tags)
    return client.get_model_version(name, version.version)
