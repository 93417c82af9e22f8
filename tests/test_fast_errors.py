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
# Every case in one child process, one after the other (a process each cost a second of
# start-up apiece): for each, in its own folder, `signlab ARGS` with stderr captured, its exit
# code, and the HEAVY modules imported so far. Nothing heavy is imported by any case, so each
# case's check is as good as in a fresh process (and the first case that imports one is named).
PROBE = f"""
import contextlib, io, json, os, sys
from signlab.cli import app
results = []
for folder, args in json.loads(sys.argv[1]):
    os.chdir(folder)
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            app(args, prog_name="signlab")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    results.append([code, err.getvalue(), sorted(m for m in {HEAVY!r} if m in sys.modules)])
print(json.dumps(results))
"""


def probe_all(cases: list[tuple[Path, list[str]]]) -> list[tuple[subprocess.CompletedProcess[str], list[str]]]:
    """Run the CLI on each (folder, args) in one child process: per case, the process's result
    as `assert_one_line_error` reads it (stderr in `.stdout`) and the heavy modules imported so far."""
    payload = json.dumps([[str(folder), args] for folder, args in cases])
    proc = subprocess.run([sys.executable, "-c", PROBE, payload], capture_output=True, text=True, timeout=300,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return [(subprocess.CompletedProcess(args, code, err), imported)
            for (_, args), (code, err, imported) in zip(cases, results, strict=True)]


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
    "train damaged store": (["train", "--data-dir", "{data}", "--tracking-uri", "sqlite:///{data}/damaged.db"],
                            ["damaged.db is damaged", "nothing was changed"]),
    "study damaged store": (["study", "run", "{study}", "--data-dir", "{data}", "--storage", "sqlite:///{data}/o.db",
                             "--tracking-uri", "sqlite:///{data}/damaged.db"], ["damaged.db is damaged"]),
    "predict file": (["predict", "{missing}/a.png"], ["a.png: no such file"]),
    "dashboard storage": (["dashboard", "--storage", "sqlite:///{missing}/optuna.db"], ["no study storage at"]),
    "server store": (["server", "--backend-store-uri", "notaurl"], ["is not a database URL"]),
    "profile data dir": (["data", "profile", "--data-dir", "{missing}"], ["sign_mnist_train.csv not found"]),
    "split strategy": (["data", "split", "--output", "out", "--val-strategy", "bogus", "--data-dir", "{data}"],
                       ["'bogus'"]),
    "split strategy, old spelling": (["data", "split", "--output", "out", "--strategy", "bogus", "--data-dir", "{data}"],
                                     ["'bogus'"]),
}


def _case_folder(folder: Path) -> dict[str, Path]:
    """A case's folder: a data folder holding both files (empty: the checks look for them,
    nothing reads them) and a damaged SQLite file, and a tiny study file; the placeholders of CASES."""
    folder.mkdir()
    data = folder / "data"
    data.mkdir()
    for name in ("sign_mnist_train.csv", "sign_mnist_test.csv"):
        (data / name).touch()
    (data / "damaged.db").write_bytes(b"not a SQLite database " * 200)  # a tracking store overwritten
    return {"missing": folder / "missing", "study": tiny_study(folder, refit={"seeds": 1}), "data": data}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess[str], list[str], Path]]:
    """Every case of CASES run once, in its own folder: its result, heavy imports and folder."""
    root = tmp_path_factory.mktemp("fast-errors")
    folders = {name: root / f"case{i}" for i, name in enumerate(CASES)}
    cases = []
    for name, (args, _) in CASES.items():
        where = _case_folder(folders[name])
        cases.append((folders[name], [a.format(**where) for a in args]))
    return {name: (*result, folders[name]) for name, result in zip(CASES, probe_all(cases), strict=True)}


@pytest.mark.parametrize("name", CASES)
def test_a_mistake_is_refused_before_the_heavy_imports(refusals, name):
    proc, imported, folder = refusals[name]
    assert_one_line_error(proc, *CASES[name][1])
    assert imported == [], f"imported {imported} before refusing {CASES[name][0]}"
    assert sorted(p.name for p in folder.iterdir()) == ["data", "tiny.yaml"], "nothing made"


def test_help_imports_nothing_heavy(tmp_path):
    for (proc, imported), args in zip(probe_all([(tmp_path, args) for args in HELP]), HELP, strict=True):
        assert proc.returncode == 0 and imported == [], (args, imported, proc.stdout)


HELP = (["--help"], ["train", "--help"], ["study", "run", "--help"])


@pytest.mark.parametrize("args", [["train", "--preset", "cnn4"], ["study", "run", "studies/cnn_smal.yaml"]],
                         ids=["preset", "study file"])
def test_the_command_itself_answers_in_one_line(tmp_path, args):
    assert_one_line_error(run_cli(*args, timeout=120, cwd=tmp_path), "error: ")
