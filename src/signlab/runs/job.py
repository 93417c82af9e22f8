"""One training job, the unit every command and trial shares: data -> fit -> evaluate -> log."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from signlab.contract import FAMILY_TAG, N_PARAMS, TEST_AUG_ACCURACY, WORKER_TAG
from signlab.data.dataset import load_split
from signlab.data.groups import Leakage
from signlab.data.labels import LETTERS
from signlab.data.splits import Strategy, stratified_subset
from signlab.data.validation import DEFAULT_FRACTION, DEFAULT_STRATEGY, ValidationRows, split_leakage, validation_rows
from signlab.models.augment import perturb
from signlab.models.evaluate import Evaluation, confusion_chart, evaluate, latency, learning_curves_chart
from signlab.models.presets import Spec
from signlab.models.train import EpochHook, FitResult, fit
from signlab.plots import save_png
from signlab.runs import lifecycle, packaging, records, store

TEST_AUG_SEED = 20240601  # fixed: every run is scored on the same perturbed test copy
Arrays = tuple[np.ndarray, np.ndarray]


@dataclass
class Data:
    """Train/validation split of the training file, the test file and its perturbed copy."""

    train: Arrays
    val: Arrays
    val_aug: Arrays
    test: Arrays
    test_aug: Arrays
    train_source: str
    test_source: str
    subset: int
    rows: ValidationRows
    leakage: Leakage

    @property
    def seed(self) -> int:
        return self.rows.seed

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train[1]), "n_val": len(self.val[1]), "n_test": len(self.test[1])}

    def params(self) -> dict[str, object]:
        """What a run logs about its data: sizes, seed, subset and the validation split."""
        return {**self.sizes(), "seed": self.seed, "subset": self.subset, **self.rows.params()}


def prepare_data(data_dir: str | None = None, subset: int = 0, val_fraction: float = DEFAULT_FRACTION,
                 seed: int = 0, val_strategy: Strategy = DEFAULT_STRATEGY) -> Data:
    """Load both files; hold out the validation split (`signlab.data.validation`); optionally
    subset per class.

    `subset` (images per class, 0 = all) applies to the training file and to the test file,
    so quick runs stay quick; the validation split is taken from the training file only.
    """
    train_file, test_file = load_split("train", data_dir), load_split("test", data_dir)
    rows = validation_rows(train_file, val_strategy, val_fraction, seed, subset)
    train = (train_file.images[rows.train], train_file.labels[rows.train])
    val = (train_file.images[rows.val], train_file.labels[rows.val])
    test = stratified_subset(test_file.images, test_file.labels, subset, seed)
    val_aug = (perturb(val[0], seed=TEST_AUG_SEED + 1), val[1])
    test_aug = (perturb(test[0], seed=TEST_AUG_SEED), test[1])
    return Data(train, val, val_aug, test, test_aug, str(train_file.path), str(test_file.path),
                subset, rows, split_leakage(train_file, rows))


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


def log_inputs(spec: Spec, data: Data, refit_seed: int | None = None) -> Arrays:
    """Log a run's params (the spec, flattened, and the data's), the split's leakage figures
    and its datasets; the images and labels it trains on (with `refit_seed`, the whole
    training file)."""
    refit = refit_seed is not None
    params = records.flatten("", spec.model_dump())
    params.update(data.params())
    if refit:
        params.update(n_train=len(data.train[1]) + len(data.val[1]), n_val=0, refit_seed=refit_seed)
    records.log_params(params)
    records.log_metrics(data.leakage.metrics("leak_val"))
    train = (np.concatenate([data.train[0], data.val[0]]), np.concatenate([data.train[1], data.val[1]])) \
        if refit else data.train
    sources = {"training": (*train, data.train_source, "sign_mnist_train" if refit else "sign_mnist_train[train]"),
               "test": (*data.test, data.test_source, "sign_mnist_test")}
    if not refit:
        sources["validation"] = (*data.val, data.train_source, "sign_mnist_train[validation]")
    records.log_datasets(sources)
    return train


def train_and_log(spec: Spec, data: Data, hooks: Sequence[EpochHook] = (),
                  log_model: bool = True, refit_seed: int | None = None) -> Outcome:
    """Fit `spec` and log everything to the active MLflow run.

    With `refit_seed`, train on the whole training file (training and validation parts)
    for exactly `spec.epochs` epochs, seeded with `refit_seed`: no validation figures."""
    run = mlflow.active_run()
    refit = refit_seed is not None
    train = log_inputs(spec, data, refit_seed)
    logger: EpochHook = lambda epoch, metrics: records.log_metrics(metrics, step=epoch)  # noqa: E731
    result = fit(spec, train, None if refit else data.val, seed=data.seed if refit_seed is None else refit_seed,
                 hooks=[logger, *hooks])
    model = result.model
    started = time.perf_counter()
    test, test_aug = evaluate(model, *data.test), evaluate(model, *data.test_aug)
    val = None if refit else evaluate(model, *data.val)
    metrics = {
        **test.metrics("test"),
        TEST_AUG_ACCURACY: test_aug.accuracy, "test_aug_f1_macro": test_aug.f1_macro,
        N_PARAMS: model.n_params, "train_seconds": result.train_seconds,
        "epochs_run": result.epochs_run, **latency(model, data.test[0]),
    }
    if val is not None:
        metrics.update(val.metrics("final_val"), final_val_aug_accuracy=evaluate(model, *data.val_aug).accuracy,
                       best_epoch=result.best_epoch)
    # where a run's time goes besides training (docs/benchmarks.md, "Tracking overhead")
    timings = {"evaluate_seconds": time.perf_counter() - started}
    records.log_metrics(metrics)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_artifacts(folder, spec, result, val, test, test_aug)
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
    (folder / "model_summary.txt").write_text(_summary(result))
    (folder / "history.json").write_text(json.dumps(result.history))


def _summary(result: FitResult) -> str:
    model = result.model
    if model.family == "cnn":
        lines: list[str] = []
        model.estimator.summary(print_fn=lambda line, *a, **k: lines.append(line))
        return f"params: {model.n_params} (weights; Keras' totals below also count optimizer state)\n" + "\n".join(lines)
    clf = model.estimator
    if model.family == "knn":
        return (f"KNeighborsClassifier(n_neighbors={clf.n_neighbors}, weights={clf.weights!r}, algorithm={clf.algorithm!r})\n"
                f"stored: {clf.n_samples_fit_} training images of {clf.n_features_in_} pixels\n"
                f"params: {model.n_params} (the stored pixels and labels; nothing is learned)\n")
    shapes = [w.shape for w in clf.coefs_]
    return (f"MLPClassifier(hidden_layer_sizes={clf.hidden_layer_sizes}, alpha={clf.alpha})\n"
            f"layers: {' -> '.join(str(s[0]) for s in shapes)} -> {shapes[-1][1]}\n"
            f"params: {model.n_params}\n")


def run_job(spec: Spec, *, run_name: str, tags: dict[str, str],
            data_dir: str | None = None, subset: int = 0, val_fraction: float = DEFAULT_FRACTION, seed: int = 0,
            val_strategy: Strategy = DEFAULT_STRATEGY, experiment: str = "signlab", tracking_uri: str | None = None,
            hooks: Sequence[EpochHook] = (), launched: str | None = None) -> Outcome:
    """Train and evaluate `spec` as one MLflow run, or in `launched` (the run `mlflow run`
    started); with a run active, as a run nested under it, in its experiment."""
    data = prepare_data(data_dir, subset, val_fraction, seed, val_strategy)  # bad data fails before MLflow
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
