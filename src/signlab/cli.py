"""The `signlab` command: one Typer app; each feature adds its commands here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from signlab import config
from signlab.cli_errors import friendly
from signlab.contract import (
    CI_HIGH,
    CI_LOW,
    DEFAULT_MODEL_URI,
    LATENCY_MS,
    MODEL_NAMES,
    N_PARAMS,
    PRESET_TAG,
    TEST_ACCURACY,
    TEST_AUG_ACCURACY,
    TEST_F1,
    TRAIN_SECONDS,
    VAL_ACCURACY,
)
from signlab.data.settings import DataSettings

config.quiet_defaults()  # the CLI's edge: before any command imports TensorFlow or MLflow

app = typer.Typer(help="MLflow-tracked hyperparameter studies for Sign Language MNIST.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
data_app = typer.Typer(help="Get, check and profile the data set.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.callback()
def console_options(
    verbose: Annotated[bool, typer.Option("--verbose", envvar="SIGNLAB_VERBOSE", show_envvar=True,
                                          help="Also show MLflow's and TensorFlow's informational lines.")] = False,
) -> None:
    """Before any command: what the console shows (set before MLflow or TensorFlow is imported)."""
    from signlab.console import configure

    configure(verbose)


DataDir = Annotated[
    str | None,
    typer.Option("--data-dir", help="Folder with the CSVs (default: $SIGNLAB_DATA_DIR, else ./data)."),
]


@data_app.command("fetch")
@friendly
def data_fetch(
    data_dir: DataDir = None,
    url: Annotated[str | None, typer.Option(
            help="Base URL serving sign_mnist_{train,test}.csv[.gz] (default: Kaggle via kagglehub).")] = None,
    force: Annotated[bool, typer.Option(help="Download even if verified files are present.")] = False,
) -> None:
    """Download both CSVs into the data dir, verifying their SHA-256."""
    from signlab import config
    from signlab.data.fetch import fetch

    paths = fetch(data_dir or None, url=url, force=force)
    for split, path in sorted(paths.items()):
        typer.echo(f"{split}: {path} (SHA-256 verified)")
    typer.echo(f"data dir: {config.data_dir(data_dir or None).resolve()}")


@data_app.command("profile")
@friendly
def data_profile(
    data_dir: DataDir = None,
    output: Annotated[Path, typer.Option(help="Folder for the HTML/PNG files.")] = Path("profile"),
    per_letter: Annotated[int, typer.Option(min=1, max=32, help="Sample images per letter.")] = 8,
) -> None:
    """Class histograms and sample images of both splits; logged to MLflow inside a run."""
    _check_data(data_dir)
    from signlab.data.dataset import load_split
    from signlab.data.profile import class_counts, write_profile
    from signlab.runs.lifecycle import log_to_active_run

    train = load_split("train", data_dir or None)
    test = load_split("test", data_dir or None)
    written = write_profile(train, test, output, per_letter)
    for split in (train, test):
        counts = class_counts(split)
        typer.echo(
            f"{split.name}: {len(split)} images from {split.path}"
            f" ({'verified' if split.verified else 'MODIFIED'}), "
            f"{min(counts.values())}-{max(counts.values())} per class"
        )
    typer.echo(f"wrote {len(written)} files to {output}")
    run_id = log_to_active_run(written, artifact_path="profile", launched=config.take_launched_run())
    if run_id:
        typer.echo(f"logged to MLflow run {run_id}")


ValStrategy = Annotated[str, typer.Option("--val-strategy", help="grouped: hold out whole groups of variants of one photo "
                                          "(default); random: single images (leaks near-copies; for comparison).")]
# `data split` said --strategy before every command said --val-strategy: the old spelling stays.
SplitStrategy = Annotated[str, typer.Option("--val-strategy", "--strategy", help="grouped: hold out whole groups of "
                                            "variants of one photo (default); random: single images (for comparison).")]


def _strategy(value: str) -> str:
    from signlab.data.splits import STRATEGIES
    from signlab.errors import UserError

    if value not in STRATEGIES:
        raise UserError(f"--val-strategy must be one of {', '.join(STRATEGIES)}, not {value!r}")
    return value


def _check_tracking(tracking_uri: str | None) -> None:
    """A damaged SQLite tracking store is refused before MLflow is imported (SQLite's own
    check, read-only; `stores.check_sqlite_file`)."""
    from signlab.stores import check_sqlite_file

    check_sqlite_file(config.tracking_uri(tracking_uri), "MLflow tracking store")


def _check_data(data_dir: str | None) -> None:
    """Both CSVs are in the data dir (the first check loading them makes): called before
    MLflow and TensorFlow are imported, so a wrong --data-dir is refused within a second."""
    from signlab.data.dataset import find_split_file

    for split in ("train", "test"):
        find_split_file(split, data_dir or None)


@data_app.command("split")
@friendly
def data_split(
    output: Annotated[Path, typer.Option(help="Folder for split.csv.")],
    val_fraction: Annotated[float, typer.Option(
        min=0.01, max=0.9, help="Share of the training file held out.")] = config.DEFAULT_VAL_FRACTION,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the split.")] = 0,
    strategy: SplitStrategy = config.DEFAULT_VAL_STRATEGY,
    data_dir: DataDir = None,
) -> None:
    """Write the validation split runs use (split.csv: row, label, group, split) and how
    much it leaks, beside the test split's figures."""
    _strategy(strategy)  # before the data is read
    import pandas as pd

    from signlab.data.dataset import load_split
    from signlab.data.groups import leakage
    from signlab.data.validation import split_leakage, validation_rows
    from signlab.files import atomic_path, output_folder

    train = load_split("train", data_dir or None)
    test = load_split("test", data_dir or None)
    rows = validation_rows(train, _strategy(strategy), val_fraction, seed)  # type: ignore[arg-type]
    side = pd.Series("train", index=range(len(train)))
    side[rows.val] = "val"
    frame = pd.DataFrame({"row": range(len(train)), "label": train.labels, "group": rows.groups, "split": side})
    target = output_folder(output) / "split.csv"
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    typer.echo(f"wrote {target}: {len(rows.train)} train, {len(rows.val)} val rows ({strategy}, "
               f"{len(set(rows.groups[rows.val]))} of {len(set(rows.groups))} groups held out, seed {seed})")
    typer.echo(f"validation vs training rows: {split_leakage(train, rows)}")
    test_leak = leakage(train.images[rows.train], train.labels[rows.train], test.images, test.labels)
    typer.echo(f"test split vs training rows: {test_leak}")


# ---- training -------------------------------------------------------------------------
Epochs = Annotated[int | None, typer.Option(min=1, help="Epochs (MLP: most iterations); default: the preset's.")]
Subset = Annotated[int, typer.Option(min=0, help="Images per class from each file (0 = all), for quick runs.")]
ValFraction = Annotated[float, typer.Option(min=0.0, max=0.9, help="Share of the training file held out for validation; "
                                            "0: train on the whole file for the preset's epochs, the last kept.")]
Seed = Annotated[int, typer.Option(help="Seed for the split, initialisation, shuffling and augmentation.")]
SystemMetrics = Annotated[bool, typer.Option("--system-metrics/--no-system-metrics",
                                             help="Record CPU and memory use on each run (MLflow system metrics).")]
TrackingUri = Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).")]


def _overrides(pairs: list[str]) -> dict[str, object]:
    """`key=value` pairs, values read as YAML (`dense_units=[64]`, `l2_dense=0.01`)."""
    import yaml

    from signlab.errors import UserError

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {key}: cannot read value {value!r} ({exc})") from None
    return out


def _parallel(value: str | None) -> int | str | None:
    """`--parallel`: a number of 1 or more, or auto; None keeps the study file's."""
    from signlab.errors import UserError

    if value is None or value == "auto":
        return value
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise UserError(f"--parallel {value[:20]!r}: expected auto or a number from 1 to 64")
    return int(value)


def _check_seed(seed: int) -> None:
    """NumPy and Keras take seeds of 0 or more; say so in one line, before any run starts."""
    from signlab.errors import UserError

    if seed < 0:
        raise UserError(f"--seed {seed}: expected an integer of 0 or more")


def _print_outcome(outcome) -> None:  # noqa: ANN001
    m = outcome.metrics
    val = f"val_accuracy {m[VAL_ACCURACY]:.4f}, " if VAL_ACCURACY in m else "no validation (whole file), "
    low, high = TEST_ACCURACY + CI_LOW, TEST_ACCURACY + CI_HIGH
    ci = f" (95% interval over photos {m[low]:.4f}-{m[high]:.4f})" if low in m else ""
    typer.echo(
        f"run {outcome.run_id}: {val}{TEST_ACCURACY} "
        f"{m[TEST_ACCURACY]:.4f}{ci} (macro F1 {m[TEST_F1]:.4f}), perturbed test "
        f"{m[TEST_AUG_ACCURACY]:.4f}, {int(m[N_PARAMS]):,} params, {outcome.fit.epochs_run} epochs "
        f"in {m[TRAIN_SECONDS]:.1f} s, {m[LATENCY_MS]:.2f} ms per image"
    )
    worst = outcome.test.worst_confusions(3)
    if worst:
        typer.echo("worst confusions: " + "; ".join(worst))


@app.command("train")
@friendly
def train(
    family: Annotated[str, typer.Option(help="cnn or mlp.")] = "cnn",
    preset: Annotated[str | None, typer.Option(
            help="cnn1, cnn2, cnn3, tutorial, tiny, nn1-nn4, knn (default: cnn3 / the MLP defaults).")] = None,
    augment: Annotated[bool | None, typer.Option("--augment/--no-augment", help="Augment training images.")] = None,
    adaptive_lr: Annotated[bool | None, typer.Option(
            "--adaptive-lr/--no-adaptive-lr", help="CNN: ReduceLROnPlateau on val_loss.")] = None,
    epochs: Epochs = None,
    set_: Annotated[list[str] | None, typer.Option(
            "--set", help="Override any spec field: key=value (YAML value). Repeatable.")] = None,
    subset: Subset = 0,
    val_fraction: ValFraction = config.DEFAULT_VAL_FRACTION,
    val_strategy: ValStrategy = config.DEFAULT_VAL_STRATEGY,
    seed: Seed = 0,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "signlab",
    run_name: Annotated[str | None, typer.Option(help="MLflow run name.")] = None,
    tracking_uri: TrackingUri = None,
    system_metrics: SystemMetrics = True,
    data_dir: DataDir = None,
) -> None:
    """Train one model (a preset or the defaults, any field overridden) as an MLflow run."""
    from signlab.models.presets import SPECS, make_spec

    _check_seed(seed)
    fields = {"augment": augment, "adaptive_lr": adaptive_lr, "epochs": epochs, **_overrides(set_ or [])}
    if family in SPECS and "adaptive_lr" not in SPECS[family].model_fields:  # a CNN option
        fields.pop("adaptive_lr")
    spec = make_spec(preset, family=family, **fields)
    settings = DataSettings(subset, _strategy(val_strategy), val_fraction, seed)
    _check_data(data_dir)
    _check_tracking(tracking_uri)
    from signlab.data.dataset import load_files

    files = load_files(data_dir or None)  # a bad file: one line, before MLflow and TensorFlow
    from signlab.runs.job import print_epoch, run_job  # MLflow and TensorFlow: after every check above
    from signlab.runs.lifecycle import log_system_metrics

    log_system_metrics(system_metrics)
    name = run_name or f"{preset or spec.family}{'-aug' if spec.augment else ''}"
    outcome = run_job(spec, files, settings, run_name=name, tags={PRESET_TAG: preset or "custom"},
                      experiment=experiment, tracking_uri=tracking_uri, hooks=[print_epoch(spec.epochs)],
                      launched=config.take_launched_run())
    _print_outcome(outcome)


@app.command("reference")
@friendly
def reference(
    names: Annotated[list[str] | None, typer.Argument(
        metavar="[NAME]...", help="Rows: nn1-nn4, cnn1-cnn3, tutorial, knn (cnn3_aug etc. for the augmented rows); "
        "several, or comma-separated, or `all`.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retrain every row of Table II, the tutorial CNN and the KNN.")] = False,
    augment: Annotated[bool, typer.Option(
            "--augment/--no-augment", help="CNN rows: the paper's augmentation + adaptive LR row.")] = False,
    epochs: Epochs = None,
    subset: Subset = 0,
    val_fraction: ValFraction = config.DEFAULT_VAL_FRACTION,
    val_strategy: ValStrategy = config.DEFAULT_VAL_STRATEGY,
    seeds: Annotated[str | None, typer.Option(help="Seeds, comma-separated (0,1,2): one run per row and seed.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="One seed: the same as --seeds N (default 0).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "references",
    tracking_uri: TrackingUri = None,
    system_metrics: SystemMetrics = True,
    data_dir: DataDir = None,
) -> None:
    """Retrain published models with their published settings, one MLflow run per row and
    seed; a row and seed already FINISHED with the same settings is skipped (so an
    interrupted run resumes)."""
    from signlab.runs.references import finished_run, parse_seeds, plan, references_session, select_rows

    settings = DataSettings(subset, _strategy(val_strategy), val_fraction)
    planned = plan(select_rows(names or [], all_, augment), parse_seeds(seeds, seed), epochs, settings,
                   data_dir)  # rows, seeds and data files checked
    from signlab.data.dataset import load_files

    files = load_files(data_dir or None)  # once, for every row and seed
    from signlab.runs.job import print_epoch, run_job  # MLflow and TensorFlow: after the checks
    from signlab.runs.lifecycle import log_system_metrics

    log_system_metrics(system_metrics)
    with references_session(len(planned), tracking_uri, experiment, config.take_launched_run()) as (experiment_id, entry):
        for item in planned:
            done = finished_run(experiment_id, item)
            if done:
                typer.echo(f"reference {item.row} seed {item.seed}: skipped, run {done} already FINISHED with these settings")
                continue
            typer.echo(f"reference {item.row} seed {item.seed}: {item.spec.family}, {item.spec.epochs} epochs")
            outcome = run_job(item.spec, files, settings.with_seed(item.seed), run_name=item.run_name, tags=item.tags,
                              experiment=experiment, tracking_uri=tracking_uri, hooks=[print_epoch(item.spec.epochs)],
                              launched=entry)
            _print_outcome(outcome)


# ---- studies ----------------------------------------------------------------------------
study_app = typer.Typer(help="Optuna studies, each a parent MLflow run with a child run per trial.",
                        no_args_is_help=True)
app.add_typer(study_app, name="study")


NTrials = Annotated[int | None, typer.Option(min=1, help="Trials to add in this session (default: the file's).")]
Timeout = Annotated[float | None, typer.Option(min=1, help="Seconds before no new trial starts (default: the file's).")]
MaxEpochs = Annotated[int | None, typer.Option(min=1, help="Epochs (MLP: iterations) per trial (default: the file's).")]
StudySubset = Annotated[int | None, typer.Option(min=0, help="Images per class (0 = all; default: the file's).")]
Storage = Annotated[str | None, typer.Option(envvar="SIGNLAB_STORAGE", show_envvar=True,
                                             help="Optuna storage, any SQLAlchemy URL (default: sqlite:///optuna.db); "
                                             "keep passwords in $PGPASSWORD or ~/.pgpass, not here.")]
StudyName = Annotated[str | None, typer.Option(help="Study name (default: the file's).")]
StudySeed = Annotated[int | None, typer.Option(help="Seed for the data split and training (default: the file's).")]
StudyFile = Annotated[Path, typer.Argument(help="A study file, e.g. studies/cnn.yaml.")]
MaxTotal = Annotated[int | None, typer.Option(min=1, help="Stop when the study holds this many trials, all workers together.")]
RefitSeeds = Annotated[int | None, typer.Option(
    min=0, max=10, help="Refits of the chosen trial when the search ends (0: none; default: the file's refit.seeds).")]


@study_app.command("run")
@friendly
def study_run(
    study_file: StudyFile,
    n_trials: NTrials = None,
    timeout: Timeout = None,
    max_epochs: MaxEpochs = None,
    subset: StudySubset = None,
    storage: Storage = None,
    tracking_uri: TrackingUri = None,
    system_metrics: SystemMetrics = True,
    study_name: StudyName = None,
    seed: StudySeed = None,
    max_total_trials: MaxTotal = None,
    refit_seeds: RefitSeeds = None,
    worker: Annotated[int | None, typer.Option(min=1, envvar="SIGNLAB_WORKER", show_envvar=True,
                                               help="This worker's number (1, 2, ...), shown on its output lines.")] = None,
    data_dir: DataDir = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar over trials.")] = True,
    new_parent: Annotated[bool, typer.Option(
            "--new-parent", help="If the tracking store lacks the study's parent run (a deleted mlflow.db), "
            "go on under a new one instead of stopping.")] = False,
    parallel: Annotated[str | None, typer.Option(
            envvar=config.PARALLEL_ENV, show_envvar=True,
            help="Trials at once here, as worker processes sharing the cores: a number, or auto (one per core, "
            "as memory allows); default: the file's `parallel` (auto).")] = None,
) -> None:
    """Run a study, or resume it: the same command again adds trials to the same study.
    Started on several machines with one --storage and --tracking-uri, the workers share it.
    Several trials at once (`--parallel`, the file's `parallel: auto`) run as local workers."""
    from signlab.search.setup import Overrides, checked_inputs

    overrides = Overrides(n_trials=n_trials, timeout=timeout, max_epochs=max_epochs, subset=subset,
                          study_name=study_name, seed=seed, max_total_trials=max_total_trials,
                          refit_seeds=refit_seeds, new_parent=new_parent or None, parallel=_parallel(parallel))
    cfg = checked_inputs(study_file, overrides, storage or config.DEFAULT_STORAGE, data_dir)
    _check_tracking(tracking_uri)
    from signlab.runs.lifecycle import log_system_metrics  # MLflow and TensorFlow: after the checks

    n = 1 if worker is not None else (config.auto_parallel() if cfg.parallel == "auto" else cfg.parallel)
    n = min(n, cfg.n_trials)  # never more workers than trials to run
    if n > 1:  # this process launches the workers and waits; each is `study run --parallel 1`
        from signlab.search.workers import run_workers

        code = run_workers(n, study_file, overrides, storage or config.DEFAULT_STORAGE, tracking_uri, data_dir,
                           echo=typer.echo, system_metrics=system_metrics, launched=config.take_launched_run())
        if code:
            raise typer.Exit(code)
        return
    from signlab.search.study import run_study

    log_system_metrics(system_metrics)
    from signlab.data.dataset import load_files

    run_study(study_file, overrides, storage=storage, tracking_uri=tracking_uri, files=load_files(data_dir or None),
              progress=progress, echo=typer.echo, worker=worker, launched=config.take_launched_run())


@study_app.command("workers")
@friendly
def study_workers(
    n: Annotated[int, typer.Argument(min=1, max=64, help="How many worker processes.")],
    study_file: StudyFile,
    n_trials: Annotated[int | None, typer.Option(
            min=1, help="Trials to add, all workers together (default: the file's).")] = None,
    timeout: Timeout = None,
    max_epochs: MaxEpochs = None,
    subset: StudySubset = None,
    storage: Storage = None,
    tracking_uri: TrackingUri = None,
    system_metrics: SystemMetrics = True,
    study_name: StudyName = None,
    seed: StudySeed = None,
    max_total_trials: MaxTotal = None,
    refit_seeds: RefitSeeds = None,
    data_dir: DataDir = None,
) -> None:
    """Run N worker processes on one study (here; on other machines run `signlab study run`
    with the same --storage, --tracking-uri and --max-total-trials): `study run --parallel N`."""
    study_run.__wrapped__(study_file, n_trials=n_trials, timeout=timeout, max_epochs=max_epochs, subset=subset,
                          storage=storage, tracking_uri=tracking_uri, system_metrics=system_metrics,
                          study_name=study_name, seed=seed, max_total_trials=max_total_trials,
                          refit_seeds=refit_seeds, data_dir=data_dir, parallel=str(n))


@study_app.command("refit")
@friendly
def study_refit(
    study_file: StudyFile,
    seeds: Annotated[int | None, typer.Option(
            min=1, max=10, help="Refits (seeds seed, seed+1, ...); default: the file's refit.seeds.")] = None,
    storage: Storage = None,
    tracking_uri: TrackingUri = None,
    system_metrics: SystemMetrics = True,
    study_name: StudyName = None,
    data_dir: DataDir = None,
    parallel: Annotated[str | None, typer.Option(
            envvar=config.PARALLEL_ENV, show_envvar=True,
            help="Refits at once, as processes sharing the cores: a number, or auto (one per core, as memory "
            "allows); default: the file's `parallel` (auto).")] = None,
    # a launcher's refit process (`search.workers.refit_launcher`): this trial, this seed, the
    # launcher's max_epochs (a trial with no recorded best epoch refits for max_epochs)
    trial: Annotated[int | None, typer.Option(min=0, hidden=True)] = None,
    only_seed: Annotated[int | None, typer.Option(min=0, hidden=True)] = None,
    max_epochs: Annotated[int | None, typer.Option(min=1, hidden=True)] = None,
) -> None:
    """Retrain a study's chosen trial on the whole training file, once per seed, as runs
    nested under its parent run (a study does this itself when it ends), with the data settings
    the study ran with (a study run with --seed 7 refits with seeds 7, 8, ...); several seeds at
    once (`--parallel`). Seeds that already have a FINISHED refit of that trial and spec are
    skipped: run it again to resume."""
    from signlab.search.setup import Overrides, resolved_config

    overrides = Overrides(study_name=study_name, refit_seeds=seeds, max_epochs=max_epochs, parallel=_parallel(parallel))
    cfg = resolved_config(study_file, overrides)
    refits = cfg.refit.seeds  # with none, refit_study says so first
    if refits:
        _check_data(data_dir)
    _check_tracking(tracking_uri)
    from signlab.data.dataset import load_files
    from signlab.runs.lifecycle import log_system_metrics  # MLflow and TensorFlow: after the checks
    from signlab.search.study import refit_study

    log_system_metrics(system_metrics)
    files = load_files(data_dir or None) if refits else None
    n = config.auto_parallel() if cfg.parallel == "auto" else cfg.parallel
    launch = None
    if only_seed is None and n > 1:  # the seeds at once, each a `study refit --only-seed` process
        from signlab.search.workers import refit_launcher

        launch = refit_launcher(study_file, cfg, storage or config.DEFAULT_STORAGE, config.tracking_uri(tracking_uri),
                                data_dir, system_metrics, at_most=None if cfg.parallel == "auto" else n)
    refit_study(study_file, overrides, storage, tracking_uri, files=files, echo=typer.echo,
                trial_number=trial, only_seed=only_seed, launch=launch)


@study_app.command("check")
@friendly
def study_check(study_file: Annotated[Path, typer.Argument(help="A study file.")]) -> None:
    """Validate a study file and print what it searches."""
    from signlab.search.study_config import load_study_config

    cfg = load_study_config(study_file)  # every mistake at once, buildable specs included
    typer.echo(f"{study_file}: study {cfg.study_name!r}, {cfg.family}, objectives {cfg.objectives} "
               f"({', '.join(cfg.directions or [])}), {cfg.n_trials} trials, {cfg.max_epochs} epochs each")
    for key, param in cfg.space.items():
        typer.echo(f"  {key}: {param.model_dump(exclude_defaults=True)}")


# ---- registry and prediction ---------------------------------------------------------------
@app.command("promote")
@friendly
def promote(
    family: Annotated[str | None, typer.Option(help="cnn or mlp: promote that family's best run by validation accuracy.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Promote this run instead.")] = None,
    experiment: Annotated[str | None, typer.Option(help="With --family: look only in this experiment.")] = None,
    force: Annotated[bool, typer.Option(help="Make it champion even if it does not beat the current one.")] = False,
    trust_model: Annotated[bool, typer.Option(
            "--trust-model", help="Register a classifier that is not stored as data (a pickle, other code), "
                                  "which `predict` would then refuse too: loading it RUNS ITS CODE.")] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Register a run's model; move the `champion` alias to it only if it beats the champion."""
    from signlab.errors import UserError

    if (family is None) == (run_id is None):
        raise UserError("give --family cnn|mlp or --run-id RUN")
    if family is not None and family not in MODEL_NAMES:  # the families with a registered model
        raise UserError(f"--family must be cnn or mlp, not {family!r}")
    from mlflow.tracking import MlflowClient  # after the checks: MLflow takes seconds to import

    from signlab.runs.store import setup
    from signlab.serving.registry import best_run
    from signlab.serving.registry import promote as do_promote

    setup(tracking_uri)
    client = MlflowClient()
    chosen = run_id or best_run(client, family, experiment).info.run_id
    verdict = do_promote(chosen, force=force, client=client, trust_model=trust_model)
    typer.echo(verdict.message)




@app.command("predict")
@friendly
def predict_command(
    inputs: Annotated[list[Path], typer.Argument(help="PNG/JPEG images (any size) or CSVs in the data set's format.")],
    model: Annotated[str, typer.Option(help="Model URI (default: the CNN champion).")] = DEFAULT_MODEL_URI,
    top: Annotated[int, typer.Option(min=1, max=24, help="How many letters to list per image.")] = 3,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output (a JSON array, streamed).")] = False,
    trust_model: Annotated[bool, typer.Option(
            "--trust-model", help="Load a model that is not a signlab classifier stored as data (a pickle, "
                                  "other code): this RUNS ITS CODE. Only for a model whose writer you trust.")] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Predict the letter of each image; CSV rows (plain or .gz) are read and answered in chunks."""
    import json

    from signlab.errors import UserError
    from signlab.serving.predict import check_inputs

    check_inputs(inputs)  # before MLflow is imported (seconds)
    from mlflow.exceptions import MlflowException

    from signlab.runs.store import setup
    from signlab.serving.predict import predict

    setup(tracking_uri)
    try:
        results = predict(model, inputs, top, trust_model=trust_model)
        if json_:  # one array, item by item as results come
            for i, r in enumerate(results):
                item = json.dumps(r, indent=2).replace("\n", "\n  ")
                typer.echo(f"{'[' if i == 0 else ','}\n  {item}", nl=False)
            typer.echo("\n]")
            return
        for r in results:
            others = ", ".join(f"{t['letter']} {t['probability']:.3f}" for t in r["top"])
            typer.echo(f"{r['input']}: {r['letter']} ({r['probability']:.3f})  top {top}: {others}")
    except MlflowException as exc:
        raise UserError(f"cannot use model {model}: {exc.message.splitlines()[0]}") from None


server_app = typer.Typer(help="An MLflow tracking server for a team; `server users` manages its accounts.",
                         invoke_without_command=True)
app.add_typer(server_app, name="server")
users_app = typer.Typer(help="Accounts on a `signlab server --auth` (as an admin: MLFLOW_TRACKING_USERNAME and "
                        "MLFLOW_TRACKING_PASSWORD).", no_args_is_help=True)
server_app.add_typer(users_app, name="users")
ServerUri = Annotated[str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True,
                                        help="The server's URL.")]


@server_app.callback()
@friendly
def server(
    ctx: typer.Context,
    backend_store_uri: Annotated[str, typer.Option(
        envvar="MLFLOW_BACKEND_STORE_URI", show_envvar=True,
        help="Database for runs and models (SQLAlchemy URL).")] = config.DEFAULT_TRACKING_URI,
    artifacts_destination: Annotated[str, typer.Option(
            help="Where the server keeps artifacts (a folder or s3://...).")] = "./mlartifacts",
    host: Annotated[str, typer.Option(help="Interface to listen on; 127.0.0.1 keeps it to this machine "
                                      "(another needs --auth or --insecure).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 5000,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Server worker processes.")] = 1,
    allowed_hosts: Annotated[str | None, typer.Option(help="Host names the server answers to, e.g. 'trainbox:5000' "
                                                      "(MLflow's default: localhost and private IPs).")] = None,
    auth: Annotated[bool, typer.Option("--auth", help="Require a user name and password (MLflow's basic-auth app; "
                                       "admin 'admin', password from $SIGNLAB_ADMIN_PASSWORD).")] = False,
    auth_db: Annotated[str | None, typer.Option(help="With --auth: the user database, a path or SQLAlchemy URL "
                                                "(default: mlflow-auth.db beside a SQLite backend store, "
                                                "else in this folder).")] = None,
    default_permission: Annotated[str, typer.Option(help="With --auth: what users may do to experiments and models "
                                                    "they did not create: READ, USE, EDIT (log to them, not delete), "
                                                    "MANAGE or NO_PERMISSIONS.")] = "EDIT",
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a --host other than loopback without --auth "
                                           "(anyone who reaches the port can change and delete everything).")] = False,
    admin_password: Annotated[str | None, typer.Option(envvar="SIGNLAB_ADMIN_PASSWORD", hidden=True)] = None,  # env only
) -> None:
    """Start an MLflow tracking server (database backend store, proxied artifacts) for
    workers on several machines and a team's MLflow UI."""
    if ctx.invoked_subcommand is not None:
        return
    from signlab.serving.server import serve_tracking

    serve_tracking(backend_store_uri, artifacts_destination, host, port, workers, allowed_hosts, echo=typer.echo,
                   auth=auth, auth_db=auth_db, default_permission=default_permission, insecure=insecure,
                   admin_password=admin_password)


@users_app.command("add")
@friendly
def users_add(
    name: Annotated[str, typer.Argument(help="The new user's name.")],
    password: Annotated[str, typer.Option(envvar="SIGNLAB_USER_PASSWORD", prompt=True, hide_input=True,
                                          confirmation_prompt=True, show_envvar=True,
                                          help="The new user's password (at least 12 characters; asked if not given).")],
    tracking_uri: ServerUri = "http://127.0.0.1:5000",
) -> None:
    """Create a user (not an admin) on the server; they log in with MLFLOW_TRACKING_USERNAME
    and MLFLOW_TRACKING_PASSWORD."""
    from signlab.serving.server import add_user

    add_user(tracking_uri, name, password)
    typer.echo(f"user {name} created on {tracking_uri}")


@users_app.command("list")
@friendly
def users_list(tracking_uri: ServerUri = "http://127.0.0.1:5000") -> None:
    """The server's users, admins marked."""
    from signlab.serving.server import list_users

    for user in list_users(tracking_uri):
        typer.echo(user["username"] + (" (admin)" if user.get("is_admin") else ""))


@app.command("dashboard")
@friendly
def dashboard(
    storage: Storage = None,
    host: Annotated[str, typer.Option(help="Interface to listen on; 127.0.0.1 keeps it to this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8080,
    allow_writes: Annotated[bool, typer.Option("--allow-writes", help="Let the dashboard delete, rename and "
                                               "annotate studies (default: read-only).")] = False,
    allowed_hosts: Annotated[list[str] | None, typer.Option(help="Host names (besides loopback and --host) the "
                                                            "dashboard answers to, e.g. 'trainbox' (repeatable, "
                                                            "or comma-separated).")] = None,
) -> None:
    """Browse the studies in a storage with optuna-dashboard (history, importances, each trial's
    params and user attributes: its MLflow run as `mlflow_run_id`, and `mlflow_run_url` with a
    tracking server). Read-only unless --allow-writes; it answers only requests addressed to
    loopback, --host or --allowed-hosts (a web page cannot reach it by DNS rebinding)."""
    from signlab import config
    from signlab.errors import UserError
    from signlab.stores import sqlite_file

    database = sqlite_file(storage or config.DEFAULT_STORAGE)
    if database is not None and not database.is_file():  # as `serve` checks, before its imports (seconds)
        raise UserError(f"no study storage at {database} (SQLite file not found): run a study first, "
                        "or pass --storage (or $SIGNLAB_STORAGE) naming the one it used")
    from signlab.serving.dashboard import serve_dashboard

    names = [n.strip() for item in allowed_hosts or [] for n in item.split(",") if n.strip()]
    serve_dashboard(storage or config.DEFAULT_STORAGE, host, port, echo=typer.echo, allow_writes=allow_writes,
                    allowed_hosts=names)


# ---- report ---------------------------------------------------------------------------------
@app.command("report")
@friendly
def report(
    experiment: Annotated[list[str] | None, typer.Option(help="Only these experiments (repeatable; default: all).")] = None,
    study: Annotated[str | None, typer.Option(help="Only this study.")] = None,
    family: Annotated[str | None, typer.Option(help="Only cnn or mlp.")] = None,
    top: Annotated[int, typer.Option(min=1, help="Trials per study, best first by validation accuracy.")] = 1,
    output: Annotated[Path, typer.Option(help="Folder for report.md and report.html.")] = Path("reports"),
    tracking_uri: TrackingUri = None,
) -> None:
    """Compare our best runs with the published references (Markdown + HTML, logged to MLflow)."""
    from signlab.files import output_folder

    output_folder(output)  # a folder that cannot be written is refused before MLflow is imported
    from signlab.runs.store import setup
    from signlab.serving.report import run_report

    setup(tracking_uri)
    paths = run_report(output, experiment or None, study, family, top, launched=config.take_launched_run())
    for path in paths:
        typer.echo(f"wrote {path}")


def main() -> None:
    """Entry point for `python -m signlab`."""
    app()
