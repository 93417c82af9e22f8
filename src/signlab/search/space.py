"""From a study's search space to a model spec: what one trial trains."""

from __future__ import annotations

from typing import Any

import optuna

from signlab.models.family import family
from signlab.models.presets import Spec, make_spec
from signlab.search.study_config import CategoricalParam, FloatParam, IntParam, Param, StudyConfig


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
    kind = family(cfg.family)
    depth_key, width_key = kind.depth_key, kind.width_key
    values: dict[str, Any] = dict(cfg.fixed)
    if depth_key in cfg.space:
        values[depth_key] = suggest(trial, depth_key, cfg.space[depth_key])
    depth = int(values.get(depth_key, kind.default_depth))
    if width_key in cfg.space:
        values[width_key] = [suggest(trial, f"{width_key}_{i}", cfg.space[width_key])
                             for i in range(1, depth + 1)]
    for key, param in cfg.space.items():
        if key not in (depth_key, width_key):
            values[key] = suggest(trial, key, param)
    return spec_from_values(cfg.family, values, cfg.max_epochs)


def spec_from_values(family_name: str, values: dict[str, Any], epochs: int) -> Spec:
    """Build a spec from space-level values (n_blocks, filters, conv_dropout... or n_layers,
    units...) and any spec fields given directly."""
    return make_spec(None, family=family_name, epochs=epochs, **family(family_name).spec_fields(values))


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
