"""The published reference figures (references.yaml, shipped in the package) and how to retrain them here.

`signlab reference` runs each (row, seed) asked for as one MLflow run tagged `reference`
(the row), `seed` and `reference.settings` (row, seed, epochs, subset, validation split,
spec and data digests). A (row, seed) whose settings already have a FINISHED run in the
experiment is skipped, so an interrupted `--all` resumes where it stopped. Under `mlflow
run`, one (row, seed) is the entry point's run itself; several are runs nested under it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signlab.contract import (
    PRESET_TAG,
    REFERENCE_ROW_TAG,
    REFERENCE_SETTINGS_TAG,
    ROLE_REFERENCES,
    ROLE_TAG,
    SEED_TAG,
    VAL_FRACTION_PARAM,
    VAL_STRATEGY_PARAM,
)
from signlab.data import DataSettings
from signlab.errors import UserError
from signlab.models.family import FAMILIES
from signlab.models.presets import PRESETS, Spec, make_spec, spec_digest

REFERENCES_FILE = Path(__file__).with_name("references.yaml")  # package data: found when installed too


class Reference(BaseModel):
    """One published model and its figures."""

    model_config = ConfigDict(extra="forbid")
    key: str
    model: str
    family: str
    source: str
    accuracy: float = Field(ge=0.0, le=1.0)
    f1: float | None = Field(None, ge=0.0, le=1.0)
    params: int | None = Field(None, ge=1)
    reproduce: str | None = None
    tuned_on_test: bool = False
    note: str | None = None


def load_references(path: Path = REFERENCES_FILE) -> list[Reference]:
    """Read and validate the reference figures."""
    try:
        raw = yaml.safe_load(path.read_text())
        return [Reference.model_validate(row) for row in raw["references"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValidationError) as exc:
        raise UserError(f"{path}: not a valid references file ({exc})") from None


def reproducible() -> list[str]:
    """Names accepted by `signlab reference`: the rows of Table II, the tutorial and the KNN."""
    return [r.reproduce for r in load_references() if r.reproduce]


def reference_spec(name: str, epochs: int | None = None) -> Spec:
    """The spec that retrains reference row `name` ('cnn3_aug': cnn3 + augmentation + adaptive LR)."""
    if name not in reproducible():
        raise UserError(f"unknown reference {name!r}; choose one of {', '.join(reproducible())}")
    preset, _, aug = name.partition("_")
    extra = {"augment": True, "adaptive_lr": True} if aug == "aug" else {}
    if not FAMILIES[PRESETS[preset]["family"]].epochs_matter:
        epochs = None  # a KNN has no epochs; --epochs is for the rows that train
    return make_spec(preset, epochs=epochs, **extra)


def select_rows(names: list[str], all_rows: bool = False, augment: bool = False) -> list[str]:
    """The rows asked for, in order, each once: NAMEs (comma-separated lists too; `all` is
    every row, as `--all`), with `augment` turning cnnN into cnnN_aug."""
    asked = [part.strip() for name in names for part in name.split(",") if part.strip()]
    if all_rows and asked:
        raise UserError("give reference NAMEs or --all, not both")
    if all_rows or asked == ["all"]:
        return reproducible()
    if not asked:
        raise UserError(f"give reference NAMEs or --all; the rows are {', '.join(reproducible())}")
    if "all" in asked:
        raise UserError("`all` stands alone: it already names every row")
    rows = [f"{n}_aug" if augment and n.startswith("cnn") and not n.endswith("_aug") else n for n in asked]
    for row in rows:
        reference_spec(row)  # an unknown name fails here, before anything runs
    return list(dict.fromkeys(rows))


def parse_seeds(seeds: str | None, seed: int | None = None) -> list[int]:
    """`--seeds 0,1,2` as [0, 1, 2]; `--seed N` is `--seeds N`; neither: [0]."""
    if seeds is not None and seed is not None:
        raise UserError("give --seed or --seeds, not both")
    if seeds is None:
        return [0 if seed is None else seed]
    parts = [p.strip() for p in seeds.split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise UserError(f"--seeds: expected integers >= 0 separated by commas (0,1,2), got {seeds!r}")
    return list(dict.fromkeys(int(p) for p in parts))


@dataclass(frozen=True)
class PlannedRun:
    """One (row, seed) to run, with the settings that identify its runs."""

    row: str
    seed: int
    spec: Spec
    settings: str

    @property
    def run_name(self) -> str:
        return f"reference-{self.row}-seed{self.seed}"

    @property
    def tags(self) -> dict[str, str]:
        return {PRESET_TAG: self.row.split("_")[0], REFERENCE_ROW_TAG: self.row, SEED_TAG: str(self.seed),
                REFERENCE_SETTINGS_TAG: self.settings}


def data_digest(data_dir: str | None = None) -> str:
    """The first 12 hex digits of the train and test files' SHA-256: 'train:...,test:...'."""
    from signlab.data.dataset import find_split_file, sha256_file

    return ",".join(f"{split}:{sha256_file(find_split_file(split, data_dir))[:12]}" for split in ("train", "test"))


def plan(rows: list[str], seeds: list[int], epochs: int | None, data_settings: DataSettings,
         data_dir: str | None = None) -> list[PlannedRun]:
    """Every (row, seed), seed by seed (all rows with the first seed come first); the data
    settings' own seed is replaced by each of `seeds`."""
    subset, val_strategy, val_fraction = (data_settings.subset, data_settings.val_strategy,
                                          data_settings.val_fraction)
    data = data_digest(data_dir)
    planned = []
    for seed in seeds:
        for row in rows:
            spec = reference_spec(row, epochs)
            digest = spec_digest(spec)
            settings = (f"row={row} seed={seed} epochs={spec.epochs} subset={subset} {VAL_STRATEGY_PARAM}={val_strategy} "
                        f"{VAL_FRACTION_PARAM}={val_fraction:g} spec={digest} data={data}")
            planned.append(PlannedRun(row, seed, spec, settings))
    return planned


def finished_run(experiment_id: str, planned: PlannedRun) -> str | None:
    """The id of a FINISHED run in the experiment with `planned`'s settings, if any."""
    import mlflow

    runs = mlflow.search_runs(
        [experiment_id], f"tags.`{REFERENCE_SETTINGS_TAG}` = '{planned.settings}' and attributes.status = 'FINISHED'",
        max_results=1, output_format="list")
    return runs[0].info.run_id if runs else None


@contextmanager
def references_session(n_runs: int, tracking_uri: str | None, experiment: str,
                       launched: str | None = None) -> Iterator[tuple[str, str | None]]:
    """Set up tracking; yield the experiment id the runs go to and the run a single one is
    made in. Under `mlflow run` (`launched`: its run), one run to do is that run itself; with
    several, it is open meanwhile, as their parent."""
    import mlflow

    from signlab.runs import lifecycle, store

    store.setup(tracking_uri, None if launched else experiment)
    if not launched:
        yield mlflow.get_experiment_by_name(experiment).experiment_id, None
        return
    experiment_id = mlflow.get_run(launched).info.experiment_id
    if n_runs == 1:
        yield experiment_id, launched
        return
    with lifecycle.tracked_run(run_id=launched, tags={ROLE_TAG: ROLE_REFERENCES}):
        yield experiment_id, None


def watched_test(ref: Reference) -> str:
    """'yes' for a setup that watched the test split while training (`tuned_on_test`), 'maybe'
    where its note says the test split may have been watched, else ''."""
    if ref.tuned_on_test:
        return "yes"
    return "maybe" if ref.note and "watched" in ref.note else ""


def best_clean_reference(family: str | None = None) -> Reference | None:
    """The best published figure whose setup did not watch the test split."""
    clean = [r for r in load_references() if not watched_test(r) and (family is None or r.family == family)]
    return max(clean, key=lambda r: r.accuracy, default=None)
