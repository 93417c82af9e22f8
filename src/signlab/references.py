"""The published reference figures (studies/references.yaml) and how to retrain them here."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signlab import config
from signlab.errors import UserError
from signlab.models.presets import Spec, make_spec

REFERENCES_FILE = config.STUDIES_DIR / "references.yaml"


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
    """Names accepted by `signlab reference`: the rows of Table II and the tutorial."""
    return [r.reproduce for r in load_references() if r.reproduce]


def reference_spec(name: str, epochs: int | None = None) -> Spec:
    """The spec that retrains reference row `name` ('cnn3_aug': cnn3 + augmentation + adaptive LR)."""
    if name not in reproducible():
        raise UserError(f"unknown reference {name!r}; choose one of {', '.join(reproducible())}")
    preset, _, aug = name.partition("_")
    extra = {"augment": True, "adaptive_lr": True} if aug == "aug" else {}
    return make_spec(preset, epochs=epochs, **extra)
