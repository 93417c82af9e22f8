"""From a study's search space to a model spec: what one trial trains."""

from __future__ import annotations

from typing import Any

import optuna

from signlab.models.presets import Spec, make_spec
from signlab.search.study_config import CategoricalParam, FloatParam, IntParam, Param, StudyConfig

PER_BLOCK = {"cnn": ("n_blocks", "filters"), "mlp": ("n_layers", "units")}
DEFAULT_DEPTH = {"cnn": 3, "mlp": 2}


def suggest(trial: optuna.Trial, name: str, param: Param) -> Any:
    """Draw one value of `param` under `name`."""
    if isinstance(param, IntParam):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    if isinstance(param, FloatParam):
        return trial.suggest_float(name, param.low, param.high, log=param.log)
    assert isinstance(param, CategoricalParam)
    return trial.suggest_categorical(name, param.choices)


def trial_spec(trial: optuna.Trial, cfg: StudyConfig) -> Spec:
    """The spec a trial trains: searched values, then `fixed` ones, epochs = max_epochs."""
    depth_key, width_key = PER_BLOCK[cfg.family]
    values: dict[str, Any] = dict(cfg.fixed)
    if depth_key in cfg.space:
        values[depth_key] = suggest(trial, depth_key, cfg.space[depth_key])
    depth = int(values.get(depth_key, DEFAULT_DEPTH[cfg.family]))
    if width_key in cfg.space:
        values[width_key] = [suggest(trial, f"{width_key}_{i}", cfg.space[width_key])
                             for i in range(1, depth + 1)]
    for key, param in cfg.space.items():
        if key not in (depth_key, width_key):
            values[key] = suggest(trial, key, param)
    return spec_from_values(cfg.family, values, cfg.max_epochs)


def spec_from_values(family: str, values: dict[str, Any], epochs: int) -> Spec:
    """Build a spec from space-level values (n_blocks, filters, conv_dropout... or n_layers,
    units...) and any spec fields given directly."""
    values = dict(values)
    if family == "cnn":
        depth = int(values.pop("n_blocks", DEFAULT_DEPTH["cnn"]))
        filters = _per_layer(values.pop("filters", 32), depth)
        batch_norm = bool(values.pop("batch_norm", False))
        dropout = float(values.pop("conv_dropout", 0.0))
        # Pool after each block, except the last when there are 3 or more (28 -> 14 -> 7 -> 4),
        # as in the paper's CNN 2 and CNN 3; dropout after every block but the first.
        values["blocks"] = [
            {"filters": f, "batch_norm": batch_norm, "dropout": dropout if i > 0 else 0.0,
             "pool": not (depth >= 3 and i == depth - 1)}
            for i, f in enumerate(filters)
        ]
        if "dense_units" in values and not isinstance(values["dense_units"], list):
            values["dense_units"] = [int(values["dense_units"])]
    else:
        depth = int(values.pop("n_layers", DEFAULT_DEPTH["mlp"]))
        values["hidden_layers"] = _per_layer(values.pop("units", 128), depth)
    return make_spec(None, family=family, epochs=epochs, **values)


def _per_layer(value: Any, depth: int) -> list[int]:
    if isinstance(value, list):
        if len(value) < depth:
            raise ValueError(f"{len(value)} widths given for {depth} layers")
        return [int(v) for v in value[:depth]]
    return [int(value)] * depth


def build_problem(family: str, fixed: dict[str, Any], space: dict[str, Param], epochs: int) -> str | None:
    """Why `fixed` with each param's low end (first choice) makes no valid spec, or None."""
    from signlab.errors import UserError

    values: dict[str, Any] = dict(fixed)
    for key, param in space.items():
        values[key] = param.choices[0] if isinstance(param, CategoricalParam) else param.low
    try:
        spec_from_values(family, values, epochs)
    except (UserError, ValueError, TypeError) as exc:
        return f"fixed, space: {exc}"
    return None


def check_buildable(cfg: StudyConfig, source: str) -> None:
    """Build one spec from the study's values, so a bad `fixed` entry (or a command line's
    max_epochs) fails before any trial runs (UserError naming `source`)."""
    from signlab.errors import UserError

    problem = build_problem(cfg.family, cfg.fixed, cfg.space, cfg.max_epochs)
    if problem:
        raise UserError(f"{source}: {problem}")
