"""The package's shape, checked from its source: imports point one way (down the flow of
data -> models -> runs -> search -> serving -> cli), the run contract's names are written in
one place, and only `config` touches the process environment. No data needed."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "signlab"
# the layers, lowest first; a module may import its own layer and those below it
LAYERS = [
    {"config", "errors", "signals", "contract", "exports", "files", "stores", "plots", "console"},
    {"data"},
    {"models"},
    {"runs"},
    {"search"},
    {"serving"},
    {"cli", "cli_errors", "mlproject", "__main__", "__init__", "pyfunc"},
]


def layer_of(module: str) -> int:
    """The layer of `signlab.<part>...` by its first part."""
    part = module.split(".")[1] if module.startswith("signlab.") else module
    return next(i for i, names in enumerate(LAYERS) if part in names)


def modules() -> list[tuple[str, Path]]:
    """Every module of the package as (dotted name, path)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        found.append((".".join(parts), path))
    return found


def imported(path: Path) -> set[str]:
    """The signlab modules a file imports, at the top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("signlab"):
            if node.module == "signlab":
                names.update(f"signlab.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("signlab."))
    return names


def test_every_module_is_in_a_layer():
    for name, _ in modules():
        if name != "signlab":
            assert layer_of(name) is not None, name


@pytest.mark.parametrize(("name", "path"), modules(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_no_module_imports_a_module_above_it(name, path):
    if name == "signlab.__init__":
        name = "signlab.__init__"
    own = layer_of(name) if name != "signlab" else 0
    upward = sorted(m for m in imported(path) if m != "signlab" and layer_of(m) > own)
    assert not upward, f"{name} (layer {own}) imports {upward}"


def test_only_config_touches_the_environment():
    users = [str(path.relative_to(SRC)) for name, path in modules()
             if name != "signlab.config" and re.search(r"\bos\.environ\b|\bos\.getenv\b|\bputenv\b", path.read_text())]
    assert users == []


# Where a contract name's word is something else too: a spec field named in an error message,
# a study-file key (the study-file vocabulary is study_config's).
NOT_THE_CONTRACT = {("signlab.models.family", "lr_schedule"), ("signlab.search.study_config", "val_fraction"),
                    ("signlab.search.workers", "n_trials")}  # a worker's option, as the study file names it


def _strings(tree: ast.AST) -> list[ast.Constant]:
    """Every string constant of a module, f-string pieces included, docstrings left out."""
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def test_each_contract_name_is_written_in_one_place():
    """Every tag, attribute, param, metric, prefix and suffix name of signlab.contract (those
    with a '.' or '_': plain words such as "study" or "seed" are also English and CLI verbs)
    appears in contract.py only: not as a literal, not inside an f-string or an MLflow filter
    string (`f"metrics.test_accuracy > {x}"`, `f"importance.{name}"`)."""
    from signlab import contract

    values = {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str) and re.search(r"[._]", v)}
    values -= set(contract.OBJECTIVE_METRIC)
    elsewhere = {}
    for name, path in modules():
        if name == "signlab.contract":
            continue
        texts = [node.value for node in _strings(ast.parse(path.read_text()))]
        hits = {v for v in values for text in texts
                if re.search(rf"(?<![\w]){re.escape(v)}" + ("" if v[-1] in "._" else r"(?![\w])"), text)}
        hits -= {v for module, v in NOT_THE_CONTRACT if module == name}
        if hits:
            elsewhere[name] = sorted(hits)
    assert elsewhere == {}


def test_search_strings_name_runs_data_through_the_contract():
    """MLflow filter and order_by strings name tags and metrics with `tag_key`/`metric_key`
    of a contract name: no `tags.family` or `metrics.n_params` written out, plain words included."""
    from signlab import contract

    names = {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str)}
    found = []
    for name, path in modules():
        if name == "signlab.contract":
            continue
        for node in _strings(ast.parse(path.read_text())):
            for kind, key in re.findall(r"\b(tags|params|metrics)\.`?([A-Za-z_][\w.]*)", node.value):
                if key in names:
                    found.append(f"{name}:{node.lineno} {kind}.{key}")
    assert found == []


RUN_DATA = {"params", "tags", "metrics", "user_attrs", "system_attrs"}
NAMING_CALLS = {"set_tag", "log_param", "log_metric", "set_user_attr", "set_system_attr", "set_experiment_tag",
                "delete_tag", "metric"}


def test_run_data_is_read_and_written_through_contract_names():
    """A run's params, tags and metrics and a trial's attributes are read (`run.data.tags["x"]`,
    `.get("x")`) and written one name at a time (`set_tag("x", ...)`) by a contract name, never
    a literal: so that plain words (`seed`, `family`) are in one place too."""
    found = []
    for name, path in modules():
        if name == "signlab.contract":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            key = None
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr in RUN_DATA:
                key = node.slice
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                holder = node.func.value
                if node.func.attr == "get" and isinstance(holder, ast.Attribute) and holder.attr in RUN_DATA:
                    key = node.args[0]
                elif node.func.attr in NAMING_CALLS:
                    key = node.args[0]
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.append(f"{name}:{node.lineno} {key.value!r}")
    assert found == []


def test_every_module_says_its_job_in_its_first_line():
    for name, path in modules():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if name.endswith("__main__"):
            continue
        assert doc and doc.strip(), f"{name} has no docstring"


def test_models_pickled_with_the_old_module_path_still_load():
    """Models logged before the subpackages pickle `signlab.pyfunc.LetterPyfunc` by reference;
    that path still gives the class (checked by hand too on a model logged by 0389d9a: it
    loads through mlflow.pyfunc and predicts)."""
    import pickle

    from signlab.models.pyfunc import LetterPyfunc

    current = pickle.dumps(LetterPyfunc(), protocol=0)  # text protocol: the class is `c<module>\n<name>`
    assert b"csignlab.models.pyfunc\nLetterPyfunc\n" in current
    old = current.replace(b"csignlab.models.pyfunc\n", b"csignlab.pyfunc\n")
    assert type(pickle.loads(old)) is LetterPyfunc


# What the CLI imports to check a command's options, presets, study file, paths and URIs: a
# framework imported at the top of one of these would make every such mistake wait seconds for
# it (issue 25; tests/test_fast_errors.py runs the commands). Inside functions is where they go.
CHECKING = ["__init__", "cli", "config", "console", "contract", "errors", "signals", "stores", "data/dataset", "data/labels",
            "data/splits", "models/cnn", "models/family", "models/knn", "models/mlp", "models/presets", "runs/references",
            "search/setup", "search/space", "search/storage", "search/study_config"]
FRAMEWORKS = {"tensorflow", "keras", "sklearn", "mlflow", "scipy", "plotly", "matplotlib", "optuna_dashboard"}


@pytest.mark.parametrize("module", CHECKING)
def test_modules_that_check_input_import_no_framework_at_their_top(module):
    top = set()
    for node in ast.parse((SRC / f"{module}.py").read_text()).body:  # `if TYPE_CHECKING:` blocks are not imports
        if isinstance(node, ast.Import):
            top.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert not top & FRAMEWORKS, f"signlab.{module} imports {sorted(top & FRAMEWORKS)} at its top"


def test_the_served_model_loads_no_cli_and_no_framework_and_import_changes_nothing():
    """Importing the served model's module pulls in neither Typer, rich nor TensorFlow/Keras
    (they load when a Keras model does), and `import signlab...` leaves os.environ as it was:
    the quiet defaults are set at the edges (the CLI, the model's loader)."""
    import subprocess
    import sys

    code = ("import os, sys; before = dict(os.environ); import signlab.models.pyfunc; "
            "print(sorted(m for m in ('typer', 'rich', 'tensorflow', 'keras') if m in sys.modules)); "
            "print(sorted(k for k, v in os.environ.items() if before.get(k) != v and not k.startswith('_MLFLOW')))")
    quieted = ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    env = {k: v for k, v in __import__("os").environ.items() if k not in quieted}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout + out.stderr


def test_families_are_objects_not_strings():
    """What differs between model families is asked of `models.family`: no module compares a
    family's name with a literal or tests a spec's class (one class there per family)."""
    branch = re.compile(r"""family["'\]]*\s*[!=]=\s*["']|[!=]=\s*["'](cnn|mlp|knn)["']|"""
                        r"""in \(["'](cnn|mlp|knn)|isinstance\([^)]*(CNNSpec|MLPSpec|KNNSpec)""")
    found = [f"{name}:{i}" for name, path in modules() if name != "signlab.models.family"
             for i, line in enumerate(path.read_text().splitlines(), start=1) if branch.search(line)]
    assert found == []


def test_the_family_registry_imports_no_framework_until_a_family_is_used():
    import subprocess
    import sys

    code = ("import sys; from signlab.models.family import FAMILIES; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    # a parallel study's worker of a scikit-learn family sizes no TensorFlow pools (it would
    # import TensorFlow for nothing: about 5 s of CPU a worker); a Keras family's worker does
    # (the `signlab.threads` tag of a CNN training: tests/test_console.py)
    code = ("import sys; from signlab.models.family import family; from signlab.models.train import "
            "size_thread_pools; family('mlp').preload(); size_thread_pools(); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=os.environ | {"SIGNLAB_THREADS": "1"})
    assert out.stdout.strip() == "False", out.stdout + out.stderr[-2000:]


def test_each_default_is_declared_once():
    """The defaults users meet in several commands (the SQLite stores, the validation split,
    heartbeats) are written in config.py and read from there."""
    from signlab import config

    literals = {repr(config.DEFAULT_STORAGE), repr(config.DEFAULT_TRACKING_URI)}
    found = [f"{name}: {node.value!r}" for name, path in modules() if name != "signlab.config"
             for node in _strings(ast.parse(path.read_text())) if repr(node.value) in literals]
    numbers = re.compile(r"(val_fraction|fraction)[^=\n]*=\s*0\.2\b|Field\((15|60),")
    found += [f"{name}:{i}" for name, path in modules() if name != "signlab.config"
              for i, line in enumerate(path.read_text().splitlines(), start=1) if numbers.search(line)]
    assert found == []


PACKAGES = ("data", "models", "runs", "search", "serving")


@pytest.mark.parametrize("package", PACKAGES)
def test_other_layers_use_only_a_packages_public_names(package):
    """`__all__` of each subpackage names what other layers may use; a name imported from one
    of its modules by another layer must be there (and `from signlab.<package> import X` gives it)."""
    import importlib

    public = importlib.import_module(f"signlab.{package}")
    outside = []
    for name, path in modules():
        if name.startswith(f"signlab.{package}."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"signlab.{package}."):
                outside += [f"{name}: {a.name}" for a in node.names if a.name not in public.__all__]
    assert outside == []
    for exported in public.__all__:
        assert getattr(public, exported) is not None


def test_optuna_internals_that_signlab_relies_on_still_exist():
    """The private names `search/optuna_internals.py` uses, in the Optuna installed; no other
    module reaches into Optuna's private API (`optuna.<x>._<y>`, `._create_new_trial`)."""
    import optuna
    from optuna.storages import RDBStorage

    from signlab.search import optuna_internals

    assert callable(getattr(RDBStorage, "_create_new_trial", None)), f"checked with {optuna_internals.CHECKED_WITH}"
    assert callable(getattr(optuna.pruners.HyperbandPruner, "_get_bracket_id", None))
    assert optuna_internals.TELL == ("optuna.study._tell", "_tell_with_warning")  # where a Ctrl-C waits
    assert optuna_internals.RUN_TRIAL == ("optuna.study._optimize", "_run_trial")
    assert optuna_internals.OPTIMIZE_LOGGER == "optuna.study._optimize"
    private = re.compile(r"optuna(\.\w+)*\._\w+|\._create_new_trial")
    users = [name for name, path in modules() if name != "signlab.search.optuna_internals"
             and private.search(path.read_text())]
    assert users == [], f"Optuna {optuna.__version__}: private API used outside optuna_internals"
