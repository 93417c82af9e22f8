"""One training job, the unit every command and trial shares: data -> fit -> evaluate -> log."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np

from signlab.contract import (
    CI_HIGH,
    CI_LOW,
    EPOCHS_RUN,
    FAMILY_TAG,
    N_PARAMS,
    N_TEST_PARAM,
    QUICK_TAG,
    TEST_AUG_ACCURACY,
    THREADS_TAG,
    TRAIN_SECONDS,
    VAL_LOSS,
    WORKER_TAG,
)
from signlab.data.dataset import DataFiles, Split
from signlab.data.groups import Leakage, cached_groups
from signlab.data.labels import LETTERS
from signlab.data.settings import DataSettings
from signlab.data.splits import subset_indices
from signlab.data.validation import ValidationRows, split_leakage, validation_rows
from signlab.errors import UserError
from signlab.models.augment import perturb
from signlab.models.evaluate import Evaluation, confusion_chart, evaluate, latency, learning_curves_chart
from signlab.models.intervals import group_interval
from signlab.models.presets import Spec
from signlab.models.train import EpochHook, FitResult, fit, whole_file_problem
from signlab.plots import save_png
from signlab.runs import lifecycle, packaging, records, store
from signlab.runs.predictions import write_predictions

DEFAULT_SETTINGS = DataSettings()  # all images, the grouped fifth held out, seed 0
TEST_AUG_SEED = 20240601  # fixed: every run is scored on the same perturbed test copy
Arrays = tuple[np.ndarray, np.ndarray]


@dataclass
class Data:
    """Train/validation split of the training file, the test file and its perturbed copy,
    with each held-out image's group of variants (for intervals that resample photos)."""

    train: Arrays
    val: Arrays  # empty when nothing is held out (fraction 0: a whole-file training or refit)
    val_aug: Arrays
    test: Arrays
    test_aug: Arrays
    train_source: str
    test_source: str
    subset: int
    rows: ValidationRows
    leakage: Leakage | None  # None without validation
    test_rows: np.ndarray  # the test images' rows in the test file (0-based, header not counted)
    test_groups: np.ndarray  # per test image, its group of variants (same rule as the training file's)
    val_groups: np.ndarray  # per validation image, its group of variants
    train_file: Split | None = None  # the whole training file, for `whole_file`

    @property
    def seed(self) -> int:
        return self.rows.seed

    @property
    def has_validation(self) -> bool:
        return len(self.val[1]) > 0

    @property
    def quick(self) -> bool:
        """Trained on a subset, or tested on a capped test split: not comparable with published figures."""
        return self.subset > 0

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train[1]), "n_val": len(self.val[1]), N_TEST_PARAM: len(self.test[1])}

    def params(self) -> dict[str, object]:
        """What a run logs about its data: sizes, seed, subset and the validation split."""
        return {**self.sizes(), "seed": self.seed, "subset": self.subset, **self.rows.params()}

    def whole_file(self) -> Data:
        """The same data with nothing held out: the training and validation rows both train
        (what a refit trains on)."""
        if not self.has_validation:
            return self
        if self.train_file is None:
            raise ValueError("this Data keeps no training file to rebuild from")
        rows = self.rows.whole_file()
        return replace(self, train=(self.train_file.images[rows.train], self.train_file.labels[rows.train]),
                       val=_empty(), val_aug=_empty(), rows=rows, leakage=None,
                       val_groups=np.array([], dtype=np.int64))


def _empty() -> Arrays:
    return np.zeros((0, 28, 28), dtype=np.uint8), np.zeros(0, dtype=np.int64)


def prepare_data(files: DataFiles, settings: DataSettings = DEFAULT_SETTINGS) -> Data:
    """Hold out the validation split of the loaded files (`signlab.data.validation`; none for
    a validation fraction of 0); optionally subset per class.

    The subset (images per class, 0 = all) applies to the training file and to the test file,
    so quick runs stay quick; the validation split is taken from the training file only.
    Groups of variants are computed for both files by the same rule (cached by SHA-256).
    """
    train_file, test_file = files.train, files.test
    subset, seed = settings.subset, settings.seed
    rows = validation_rows(train_file, settings.val_strategy, settings.val_fraction, seed, subset)
    train_groups = cached_groups(train_file.images, train_file.labels, train_file.sha256)
    test_rows = subset_indices(test_file.labels, subset, seed)
    test = (test_file.images[test_rows], test_file.labels[test_rows])
    test_groups = cached_groups(test_file.images, test_file.labels, test_file.sha256)[test_rows]
    train = (train_file.images[rows.train], train_file.labels[rows.train])
    test_aug = (perturb(test[0], seed=TEST_AUG_SEED), test[1])
    if not rows.holds_out:
        return Data(train, _empty(), _empty(), test, test_aug, str(train_file.path), str(test_file.path),
                    subset, rows, None, test_rows, test_groups, np.array([], dtype=np.int64), train_file)
    val = (train_file.images[rows.val], train_file.labels[rows.val])
    val_aug = (perturb(val[0], seed=TEST_AUG_SEED + 1), val[1])
    return Data(train, val, val_aug, test, test_aug, str(train_file.path), str(test_file.path),
                subset, rows, split_leakage(train_file, rows), test_rows, test_groups, train_groups[rows.val],
                train_file)


@dataclass
class Outcome:
    """What a job measured."""

    run_id: str
    fit: FitResult
    val: Evaluation | None  # None for a refit
    test: Evaluation
    test_aug: Evaluation
    metrics: dict[str, float]


def print_epoch(total: int) -> EpochHook:
    """A hook that prints one line per epoch to stderr, with the time an epoch takes and
    the time left (the mean epoch so far, times the epochs to go)."""
    import sys
    import time

    shown = {"loss": ("loss", ".4f"), "accuracy": ("acc", ".4f"), "val_loss": ("val_loss", ".4f"),
             "val_accuracy": ("val_acc", ".4f"), "learning_rate": ("lr", ".2g")}
    started = time.perf_counter()

    def hook(epoch: int, m: dict[str, float]) -> None:
        figures = " ".join(f"{label} {m[key]:{fmt}}" for key, (label, fmt) in shown.items() if key in m)
        per_epoch = (time.perf_counter() - started) / (epoch + 1)
        left = per_epoch * (total - epoch - 1)
        timing = f" ({per_epoch:.1f} s/epoch, {_duration(left)} left)" if epoch + 1 < total else f" ({per_epoch:.1f} s/epoch)"
        print(f"epoch {epoch + 1}/{total}: {figures}{timing}", file=sys.stderr, flush=True)

    return hook


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def log_inputs(spec: Spec, data: Data, extra: dict[str, object] | None = None) -> None:
    """Log a run's params (the spec, flattened, the data's, and `extra`), the split's leakage
    figures and its datasets."""
    params = records.flatten("", spec.model_dump())
    params.update(data.params())
    params.update(extra or {})
    records.log_params(params)
    if data.leakage is not None:
        records.log_metrics(data.leakage.metrics("leak_val"))
    whole = not data.has_validation
    sources = {"training": (*data.train, data.train_source, "sign_mnist_train" if whole else "sign_mnist_train[train]"),
               "test": (*data.test, data.test_source, "sign_mnist_test")}
    if not whole:
        sources["validation"] = (*data.val, data.train_source, "sign_mnist_train[validation]")
    records.log_datasets(sources)


def interval_metrics(prefix: str, evaluation: Evaluation, groups: np.ndarray) -> dict[str, float]:
    """`<prefix>_accuracy_ci_low/high`: the 95% interval of an accuracy, resampling groups of variants."""
    interval = group_interval(evaluation.correct, groups)
    return {f"{prefix}_accuracy{CI_LOW}": interval.low, f"{prefix}_accuracy{CI_HIGH}": interval.high}


def train_and_log(spec: Spec, data: Data, hooks: Sequence[EpochHook] = (),
                  log_model: bool = True, seed: int | None = None, extra_params: dict[str, object] | None = None) -> Outcome:
    """Fit `spec` and log everything to the active MLflow run.

    With validation rows in `data`, the kept epoch is the best by validation accuracy (ties:
    lower validation loss, then the later epoch). Without (`data.whole_file()`, or a
    training with fraction 0), exactly `spec.epochs` epochs, the last kept, and no
    validation figures. `seed` (default: the data's) seeds initialisation, shuffling and
    augmentation."""
    run = mlflow.active_run()
    log_inputs(spec, data, extra_params)
    if data.quick:
        mlflow.set_tag(QUICK_TAG, "true")
    logger: EpochHook = lambda epoch, metrics: records.log_metrics(metrics, step=epoch)  # noqa: E731
    result = fit(spec, data.train, data.val if data.has_validation else None,
                 seed=data.seed if seed is None else seed, hooks=[logger, *hooks])
    mlflow.set_tag(THREADS_TAG, str(result.threads))
    model = result.model
    started = time.perf_counter()
    test, test_aug = evaluate(model, *data.test), evaluate(model, *data.test_aug)
    val = evaluate(model, *data.val) if data.has_validation else None
    metrics = {
        **test.metrics("test"), **interval_metrics("test", test, data.test_groups),
        TEST_AUG_ACCURACY: test_aug.accuracy, "test_aug_f1_macro": test_aug.f1_macro,
        N_PARAMS: model.n_params, TRAIN_SECONDS: result.train_seconds,
        EPOCHS_RUN: result.epochs_run, **latency(model, data.test[0]),
    }
    if val is not None:
        metrics.update(val.metrics("final_val"), **interval_metrics("final_val", val, data.val_groups),
                       final_val_aug_accuracy=evaluate(model, *data.val_aug).accuracy,
                       best_epoch=result.best_epoch)
        kept = result.history[result.best_epoch - 1] if result.history else {}
        if "val_loss" in kept:
            metrics[VAL_LOSS] = kept["val_loss"]
    # where a run's time goes besides training (docs/benchmarks.md, "Tracking overhead")
    timings = {"evaluate_seconds": time.perf_counter() - started}
    records.log_metrics(metrics)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_artifacts(folder, spec, result, val, test, test_aug)
        write_predictions(folder, test, data.test_rows, data.test_groups)
        mlflow.log_artifacts(str(folder))
    timings["log_artifacts_seconds"] = time.perf_counter() - started
    if log_model:
        started = time.perf_counter()
        packaging.log_models(model, data.test[0])
        timings["log_models_seconds"] = time.perf_counter() - started
    records.log_metrics(timings)
    return Outcome(run.info.run_id, result, val, test, test_aug, {**metrics, **timings})


def _write_artifacts(folder: Path, spec: Spec, result: FitResult,
                     val: Evaluation | None, test: Evaluation, test_aug: Evaluation) -> None:
    # PNG only: it opens anywhere, and MLflow's own metric charts are the interactive curves
    save_png(confusion_chart(test, "test split"), folder / "confusion_matrix.png")
    save_png(learning_curves_chart(result.history, f"{spec.family} learning curves"), folder / "learning_curves.png")
    worst = test.worst_confusions()
    val_text = "" if val is None else f"\n\nvalidation split\n{val.report_text()}"
    (folder / "classification_report.txt").write_text(
        f"test split\n{test.report_text()}\n\nworst confusions:\n" + "\n".join(worst)
        + f"\n\nperturbed test copy\n{test_aug.report_text()}{val_text}\n"
    )
    (folder / "classification_report.json").write_text(json.dumps(
        {"test": test.report, "test_aug": test_aug.report, "val": None if val is None else val.report,
         "worst_confusions": worst, "letters": list(LETTERS),
         "confusion": test.confusion.tolist()}, indent=1))
    (folder / "model_summary.txt").write_text(result.model.kind.summary(result.model))
    (folder / "history.json").write_text(json.dumps(result.history))


def run_job(spec: Spec, files: DataFiles, settings: DataSettings = DEFAULT_SETTINGS, *, run_name: str,
            tags: dict[str, str], experiment: str = "signlab", tracking_uri: str | None = None,
            hooks: Sequence[EpochHook] = (), launched: str | None = None) -> Outcome:
    """Train and evaluate `spec` as one MLflow run, or in `launched` (the run `mlflow run`
    started); with a run active, as a run nested under it, in its experiment.

    Args:
        spec: what to train (`models.presets.make_spec`).
        files: the data set, loaded by the caller (`data.dataset.load_files`).
        run_name: the run's name in the MLflow UI.
        tags: extra run tags.
        settings: subset, validation split and seed (`data.settings.DataSettings`); a
            whole-file training needs a `spec` in which `whole_file_problem` finds nothing.
        experiment: the MLflow experiment, when no run is active.
        tracking_uri: MLflow's (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).
        hooks: called as hook(epoch, metrics) after each epoch.
        launched: the run `mlflow run` started, to log into.

    Returns:
        The run's id, the fit, the evaluations and every metric logged.
    """
    if settings.whole_file:
        problem = whole_file_problem(spec)
        if problem:
            raise UserError(f"--val-fraction 0 trains without validation, but this {spec.family} cannot: {problem}")
    data = prepare_data(files, settings)  # bad settings fail before MLflow
    parent = mlflow.active_run()
    under_mlflow_run = parent is None and launched is not None
    if parent is None:
        store.setup(tracking_uri, None if under_mlflow_run else experiment)
    commit = records.git_commit()
    all_tags = {FAMILY_TAG: spec.family, WORKER_TAG: lifecycle.this_process(), **tags}
    if commit:
        all_tags.setdefault("mlflow.source.git.commit", commit)
        all_tags["git_commit"] = commit
    where = {"nested": True, "experiment_id": parent.info.experiment_id} if parent else {}
    if under_mlflow_run:
        where = {"run_id": launched}
    with lifecycle.tracked_run(run_name=None if under_mlflow_run else run_name, tags=all_tags, **where) as run:
        lifecycle.end_orphaned_runs(run.info.experiment_id)  # this run's own process is alive: left alone
        return train_and_log(spec, data, hooks)
