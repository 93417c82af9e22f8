"""Study files (`studies/*.yaml`): sampler, pruner, budget and search space, validated on load.

Every mistake gets one error naming the file and the key, e.g.
`studies/cnn.yaml: space.learning_rate: low (0.01) is greater than high (0.001)`.

`simulate: {epoch_seconds: 0.0}` runs the study without training (for measuring the
coordination path of many workers, `benchmarks/many_workers.py`): each trial makes every
storage and tracking call a real one makes (its nested run, params, datasets, per-epoch
metrics and pruning reports, heartbeats, final metrics, user attributes, state changes)
with made-up figures after sleeping `epoch_seconds` per epoch, and skips what needs a model:
figures and the two logged models. Its runs are tagged `signlab.simulated=true`.
"""

from __future__ import annotations

import difflib
import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from signlab import config
from signlab.contract import N_PARAMS
from signlab.data import DataSettings
from signlab.errors import UserError, describe_error, shorten
from signlab.models.family import FAMILIES

Direction = Literal["maximize", "minimize"]
OBJECTIVES = {"val_accuracy": "maximize", "val_aug_accuracy": "maximize", N_PARAMS: "minimize"}

# What a space may search, per family (its `searchable` keys). `filters` and `units` are drawn
# once per block/layer (as filters_1, filters_2, ...); the rest once per trial.
SPACE_KEYS = {name: set(f.searchable) for name, f in FAMILIES.items() if f.searchable}

# A study file is a page of settings: anything far larger is a mistake or an attack, refused
# before it costs anything (a 695-byte file of nested aliases once expanded to 1.7 GB).
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 50  # nesting of lists and mappings
MAX_NODES = 10_000  # values in all (the studies in studies/ hold under 100)
MAX_LISTED = 1_000  # folder entries read to name the study files beside a missing one
DAY = 24 * 3600
# Study names starting with this are signlab's own (the lock studies, `search/storage.py`).
RESERVED_PREFIX = "signlab-lock:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no `.inf` timeout, no `.nan` bound


class _Range(_Strict):
    """A numeric range: low <= high, and low > 0 on a log scale."""

    @model_validator(mode="after")
    def _bounds(self) -> _Range:
        _check_bounds(self.low, self.high, self.log)
        return self


class IntParam(_Range):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False


class FloatParam(_Range):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[bool | int | float | str] = Field(min_length=1)


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


def _check_bounds(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log scale needs low > 0, got low={low}")


class SamplerConfig(_Strict):
    type: Literal["tpe", "random", "nsga2"] = "tpe"
    seed: int | None = Field(42, ge=0)
    n_startup_trials: int = Field(5, ge=0)


class PrunerConfig(_Strict):
    type: Literal["median", "hyperband", "threshold", "none"] = "median"
    n_startup_trials: int = Field(3, ge=0)
    n_warmup_steps: int = Field(2, ge=0)
    lower: float | None = Field(None, validate_default=True,
                                description="threshold: prune when val_accuracy is below this")
    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)

    @field_validator("lower")
    @classmethod
    def _threshold_needs_lower(cls, lower: float | None, info: ValidationInfo) -> float | None:
        if info.data.get("type") == "threshold" and lower is None:
            raise ValueError("the threshold pruner needs a lower bound on val_accuracy")
        return lower


class ValidationConfig(_Strict):
    """The validation split held out from the training file (`signlab.data.validation`)."""

    strategy: Literal["grouped", "random"] = config.DEFAULT_VAL_STRATEGY  # type: ignore[assignment]
    fraction: float = Field(config.DEFAULT_VAL_FRACTION, gt=0.0, lt=1.0)


class RefitConfig(_Strict):
    """After the search, retrain the chosen trial on the whole training file."""

    seeds: int = Field(0, ge=0, le=10, description="refits with seeds seed, seed+1, ...; 0: no refit")


class ConfirmConfig(_Strict):
    """After the search, retrain the best trials with new seeds and choose by their mean."""

    top_k: int = Field(3, ge=2, le=10, description="how many of the best complete trials by validation to confirm")
    seeds: int = Field(2, ge=1, le=10, description="new-seed trainings of each, on the same split")


class SimulateConfig(_Strict):
    """Trials that train nothing: made-up, seeded curves, `epoch_seconds` of sleep per epoch."""

    epoch_seconds: float = Field(0.0, ge=0.0, le=3600.0, description="seconds each simulated epoch sleeps")


class StudyConfig(_Strict):
    """One study file."""

    study_name: str = Field(min_length=1, max_length=200)
    family: Literal["cnn", "mlp"]
    objectives: list[Literal["val_accuracy", "val_aug_accuracy", "n_params"]] = Field(
        default_factory=lambda: ["val_accuracy"], min_length=1, max_length=2)
    directions: list[Direction] | None = Field(None, validate_default=True)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    n_trials: int = Field(20, ge=1, le=100_000)
    timeout: float | None = Field(None, gt=0, le=30 * DAY, description="seconds; at most 30 days")
    max_epochs: int = Field(10, ge=1, le=1000)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    refit: RefitConfig = Field(default_factory=RefitConfig)
    parallel: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = Field(
        "auto", description="trials at once on this machine, as worker processes; auto: one per core, as memory allows")
    confirm: ConfirmConfig | None = Field(
        None, description="retrain the top_k trials `seeds` more times; the choice goes to the best mean validation accuracy")
    subset: int = Field(0, ge=0, le=100_000, description="images per class (0: all; no class has 2,000)")
    seed: int = Field(0, ge=0, description="NumPy and Keras take seeds of 0 or more")
    experiment: str | None = None
    retry_failed_trials: int = Field(0, ge=0, le=100, description="re-queue a trial whose worker died, this often")
    heartbeat_interval: int = Field(config.HEARTBEAT_SECONDS, ge=1, le=600,
                                    description="seconds between a running trial's heartbeats")
    grace_period: int = Field(config.GRACE_SECONDS, ge=2, le=3600, validate_default=True,
                              description="a trial silent this long is failed (its worker died)")
    target_val_accuracy: float | None = Field(
        None, gt=0.0, le=1.0, description="multi-objective: report the smallest model reaching this")
    max_params: int | None = Field(
        None, ge=1, le=10**10, description="CNN studies: a trial whose network has more parameters is pruned before training")
    simulate: SimulateConfig | None = Field(
        None, description="train nothing: every storage and tracking call of a trial, with made-up figures")
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Param] = Field(min_length=1)
    # Not from the file: the command line's --new-parent (a study whose parent run is gone
    # goes on under a new one instead of stopping), set by `setup.Overrides.apply`.
    _new_parent: bool = PrivateAttr(False)

    @field_validator("study_name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith(RESERVED_PREFIX):
            raise ValueError(f"names starting with {RESERVED_PREFIX!r} are signlab's own (its lock studies); choose another")
        return name

    @field_validator("fixed")
    @classmethod
    def _finite(cls, fixed: dict[str, Any]) -> dict[str, Any]:
        def walk(value: Any, where: str) -> None:  # the loader bounds the nesting
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{where}: {value} is not a finite number")
            for key, item in (value.items() if isinstance(value, dict) else enumerate(value)
                              if isinstance(value, list) else ()):
                walk(item, f"{where}.{shorten(str(key), 40)}")

        walk(fixed, "fixed")
        return fixed

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "val_fraction" in raw:
            raise ValueError("val_fraction: now validation.fraction (with validation.strategy: grouped or random)")
        return raw

    # Cross-field checks are field validators, not one model validator: pydantic runs each
    # with the fields declared before it that validated (`info.data`), even when other
    # fields failed, so a file's mistakes are all reported in one pass.
    @field_validator("directions")
    @classmethod
    def _directions_fit(cls, directions: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if "objectives" not in info.data:
            return directions
        expected = [OBJECTIVES[o] for o in info.data["objectives"]]
        if directions is not None and directions != expected:
            raise ValueError(f"{directions} do not fit objectives {info.data['objectives']} (expected {expected})")
        return expected

    @field_validator("grace_period")
    @classmethod
    def _grace_outlasts_heartbeats(cls, grace: int, info: ValidationInfo) -> int:
        beat = info.data.get("heartbeat_interval")
        if beat is not None and grace < 2 * beat:
            raise ValueError(f"{grace} s must be at least twice heartbeat_interval ({beat} s), "
                             "or a slow but live trial could be failed")
        return grace

    @field_validator("max_params")
    @classmethod
    def _max_params_for_cnns(cls, max_params: int | None, info: ValidationInfo) -> int | None:
        family = info.data.get("family")
        if max_params is not None and family is not None and not FAMILIES[family].counts_before_training:
            raise ValueError(f"only CNN studies count parameters before training; a {family} study has none to cap")
        return max_params

    @field_validator("simulate")
    @classmethod
    def _simulate_counts_nothing(cls, simulate: SimulateConfig | None, info: ValidationInfo) -> SimulateConfig | None:
        if simulate is None:
            return simulate
        problems = []
        if N_PARAMS in info.data.get("objectives", []) or info.data.get("max_params") is not None:
            problems.append("a simulated trial builds no model, so it has no n_params to minimise or cap "
                            "(drop n_params from objectives, and max_params)")
        refit = info.data.get("refit")
        if refit is not None and refit.seeds:
            problems.append(f"a simulated study has no model to refit (refit.seeds is {refit.seeds}; set it to 0)")
        if problems:
            raise ValueError("simulate: " + "; ".join(problems))
        return simulate

    @field_validator("space")
    @classmethod
    def _space_fits(cls, space: dict[str, Param], info: ValidationInfo) -> dict[str, Param]:
        from signlab.search.space import build_problem  # space.py builds on this module

        family, fixed = info.data.get("family"), info.data.get("fixed")
        problems = []
        if family is not None:
            problems += [f"space.{shorten(key, 40)}: not searchable for a {family} (searchable: "
                         f"{', '.join(sorted(SPACE_KEYS[family]))})" for key in space if key not in SPACE_KEYS[family]]
        if fixed is not None:
            problems += [f"fixed.{shorten(key, 40)}: also in space; keep it in one of the two" for key in fixed if key in space]
        if family is not None and fixed is not None and "max_epochs" in info.data:
            searchable = {key: param for key, param in space.items() if key in SPACE_KEYS[family]}
            problems += [p for p in [build_problem(family, fixed, searchable, info.data["max_epochs"])] if p]
        if problems:
            raise ValueError(_listed(problems))
        return space

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def data_settings(self) -> DataSettings:
        """The study's subset, validation split and seed, as every training takes them."""
        return DataSettings(self.subset, self.validation.strategy, self.validation.fraction, self.seed)

    @property
    def new_parent(self) -> bool:
        """Whether a study whose parent run the tracking store lacks goes on under a new one."""
        return self._new_parent

    def starting_new_parent(self) -> StudyConfig:
        """A copy whose `new_parent` is set (the command line's --new-parent)."""
        copy = self.model_copy()
        copy._new_parent = True
        return copy


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study file; UserError names the file and the key on any mistake.
    Whatever the file, that takes a moment: it is refused unread past MAX_FILE_BYTES, and
    its YAML with aliases, or nested or numerous past MAX_DEPTH or MAX_NODES, unbuilt."""
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of study settings, got {type(raw).__name__}")
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: " + _listed([describe_error(err, fields=StudyConfig.model_fields)
                                               for err in exc.errors()])) from None


def _missing_file(path: Path) -> str:
    """The error for a study file that is not there: the nearest name in its folder, if one is
    close (a typo), else the study files the folder has (at most a few, read from at most
    MAX_LISTED entries: a folder of any size answers at once)."""
    message = f"{path}: no such study file"
    try:
        entries = list(itertools.islice(path.parent.iterdir(), MAX_LISTED))
    except OSError:  # no such folder, or not readable: the path is all there is to say
        return message
    names = sorted(entry.name for entry in entries if entry.suffix in (".yaml", ".yml"))
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.8)
    if close:
        return f"{message}; did you mean {path.parent / close[0]}?"
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        return f"{message}; {path.parent} has {shown}"
    return message


def _read_yaml(path: Path) -> Any:
    """The file's YAML, read within the bounds above (libyaml, C: fast on any size allowed)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # not stat(): a FIFO or /dev/zero has no size
    except FileNotFoundError:
        raise UserError(_missing_file(path)) from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not a study file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"{path}: over {MAX_FILE_BYTES:,} bytes; a study file is a page of settings")
    try:
        text = data.decode("utf-8")
        _check_shape(text, path)
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{at}: {shorten(str(exc.problem or exc.context))}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({shorten(str(exc))})") from None


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_shape(text: str, path: Path) -> None:
    """Walk the file's YAML events (nothing built yet): no alias, depth and count bounded."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_LOADER):
        line = event.start_mark.line + 1 if event.start_mark else "?"
        if isinstance(event, yaml.AliasEvent):
            raise UserError(f"{path}: line {line}: YAML aliases (*{shorten(str(event.anchor), 20)}) are not "
                            "allowed in a study file; write the value out")
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(f"{path}: line {line}: nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise UserError(f"{path}: line {line}: more than {MAX_NODES:,} values; a study file holds a few dozen")


def _listed(problems: list[str], most: int = 10) -> str:
    """The first `most` problems, then how many more (a file can hold thousands of mistakes)."""
    more = f"; and {len(problems) - most} more" if len(problems) > most else ""
    return "; ".join(problems[:most]) + more
