"""A study file small enough to run in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def tiny_study(folder: Path, name: str = "tiny", *, max_epochs: int = 1, subset: int = 6, high: int = 64,
               **settings: Any) -> Path:
    """`folder/<name>.yaml`: an MLP study of `name` searching one layer's units (16 to `high`)
    with a seeded TPE sampler and no pruner; `settings` add or replace top-level keys."""
    study = {"study_name": name, "family": "mlp", "max_epochs": max_epochs, "subset": subset,
             "sampler": {"type": "tpe", "seed": 1}, "pruner": {"type": "none"},
             "space": {"units": {"type": "int", "low": 16, "high": high}}} | settings
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path
