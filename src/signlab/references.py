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
