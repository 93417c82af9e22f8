"""A mistake in an option, a preset, a study file, a path or a URI is refused before TensorFlow,
MLflow or scikit-learn is imported (issue 25: within about a second, where those imports take
seconds), still in one line with exit code 2. Each command runs as a real process; what it
imported is read from that process's `sys.modules`, not timed (`docs/benchmarks.md` has the
timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli, subprocess_env, tiny_study

pytestmark = pytest.mark.slow  # each test starts signlab in a child process

# each takes one to several seconds to import; none is needed to find these mistakes
HEAVY = ("tensorflow", "keras", "mlflow", "mlflow.server", "sklearn", "optuna_dashboard")
# `signlab ARGS`, then the HEAVY modules it imported, as JSON on stdout (the error is on stderr)
PROBE = f"""
import json, sys
from signlab.cli import app
try:
    app(sys.argv[1:], prog_name="signlab")
finally:
    print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def probe(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the CLI with `args` in a child process: the process (stderr alone in `.stdout`, as
    `assert_one_line_error` reads it) and the heavy modules it imported."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=subprocess_env())
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stderr), imported


CASES = {
    "preset": (["train", "--preset", "cnn4"], ["unknown preset 'cnn4'"]),
    "spec field": (["train", "--set", "nosuch=1"], ["nosuch", "Extra inputs"]),
    "set syntax": (["train", "--set", "epochs"], ["--set expects key=value"]),
    "seed": (["train", "--seed", "-1"], ["--seed -1"]),
    "val strategy": (["train", "--val-strategy", "bogus"], ["--val-strategy", "'bogus'"]),
    "train data dir": (["train", "--data-dir", "{missing}"], ["sign_mnist_train.csv not found"]),
    "reference row": (["reference", "cnn9"], ["unknown reference 'cnn9'"]),
    "reference seeds": (["reference", "cnn3", "--seeds", "a,b"], ["--seeds"]),
    "reference data dir": (["reference", "cnn3", "--data-dir", "{missing}"], ["sign_mnist_train.csv not found"]),
    "study file": (["study", "run", "studies/cnn_smal.yaml"], ["studies/cnn_smal.yaml", "no such study file"]),
    "study override": (["study", "run", "{study}", "--seed", "-1"], ["--seed -1"]),
    "study data dir": (["study", "run", "{study}", "--data-dir", "{missing}"], ["sign_mnist_train.csv not found"]),
    "study storage": (["study", "run", "{study}", "--data-dir", "{data}", "--storage", "notaurl"],
                      ["storage 'notaurl' is not a database URL"]),
    "workers study file": (["study", "workers", "2", "studies/cnn_smal.yaml"], ["no such study file"]),
    "workers storage": (["study", "workers", "2", "{study}", "--data-dir", "{data}", "--storage", "notaurl"],
                        ["is not a database URL"]),
    "refit study file": (["study", "refit", "studies/cnn_smal.yaml"], ["no such study file"]),
    "refit data dir": (["study", "refit", "{study}", "--seeds", "1", "--data-dir", "{missing}"],
                       ["sign_mnist_train.csv not found"]),
    "check study file": (["study", "check", "studies/cnn_smal.yaml"], ["no such study file"]),
    "promote neither": (["promote"], ["give --family cnn|mlp or --run-id RUN"]),
    "promote family": (["promote", "--family", "knn"], ["--family must be cnn or mlp"]),
    "report output": (["report", "--output", "{study}"], ["tiny.yaml is a file; expected a folder"]),
    "predict file": (["predict", "{missing}/a.png"], ["a.png: no such file"]),
    "dashboard storage": (["dashboard", "--storage", "sqlite:///{missing}/optuna.db"], ["no study storage at"]),
    "server store": (["server", "--backend-store-uri", "notaurl"], ["is not a database URL"]),
    "profile data dir": (["data", "profile", "--data-dir", "{missing}"], ["sign_mnist_train.csv not found"]),
    "split strategy": (["data", "split", "--output", "out", "--val-strategy", "bogus", "--data-dir", "{data}"],
                       ["'bogus'"]),
    "split strategy, old spelling": (["data", "split", "--output", "out", "--strategy", "bogus", "--data-dir", "{data}"],
                                     ["'bogus'"]),
}


@pytest.mark.parametrize(("args", "words"), CASES.values(), ids=CASES.keys())
def test_a_mistake_is_refused_before_the_heavy_imports(tmp_path, args, words):
    data = tmp_path / "data"  # both files there (empty): the checks look for them, nothing reads them
    data.mkdir()
    for name in ("sign_mnist_train.csv", "sign_mnist_test.csv"):
        (data / name).touch()
    where = {"missing": tmp_path / "missing", "study": tiny_study(tmp_path, refit={"seeds": 1}), "data": data}
    proc, imported = probe(*(a.format(**where) for a in args), cwd=tmp_path)
    assert_one_line_error(proc, *words)
    assert imported == [], f"imported {imported} before refusing {args}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "tiny.yaml"], "nothing made"


def test_help_imports_nothing_heavy(tmp_path):
    for args in (["--help"], ["train", "--help"], ["study", "run", "--help"]):
        proc, imported = probe(*args, cwd=tmp_path)
        assert proc.returncode == 0 and imported == [], (args, imported, proc.stdout)


@pytest.mark.parametrize("args", [["train", "--preset", "cnn4"], ["study", "run", "studies/cnn_smal.yaml"]],
                         ids=["preset", "study file"])
def test_the_command_itself_answers_in_one_line(tmp_path, args):
    assert_one_line_error(run_cli(*args, timeout=120, cwd=tmp_path), "error: ")
