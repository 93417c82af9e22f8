"""pyproject.toml, conda.yaml and MLproject stay in step."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_env_lists_the_same_requirements_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    assert "conda-forge" in conda["channels"]
    assert "python=3.11" in conda["dependencies"]
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(r for r in pip if r != "-e .") == sorted(project["dependencies"])


def test_mlproject_uses_conda_env_and_has_entry_points():
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert spec["conda_env"] == "conda.yaml"
    points = spec["entry_points"]
    assert {"data_profile", "train", "reference", "cnn_study", "mlp_study", "report", "promote"} <= set(points)
    for study in ("cnn_study", "mlp_study"):
        assert {"n_trials", "timeout", "max_epochs", "subset", "storage", "tracking_uri", "study_name",
                "seed"} <= set(points[study]["parameters"])
    assert points["mlp_study"]["parameters"]["study_file"]["default"] == "studies/mlp.yaml"
