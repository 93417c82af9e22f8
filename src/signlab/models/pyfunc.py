"""The MLflow pyfunc that predict and `mlflow models serve` use: pixels in, letters out.

Input (INPUT_DOC): a table whose columns are named pixel1..pixel784 in any order (as in the
data set's CSV; a `label` column is ignored), matched by name; or unnamed input, used by
position: arrays of 784-pixel rows, 28x28 or 28x28x1 images, or a frame whose columns are
the default 0..783. Values 0-255, ints or floats.
Output: one row per image with `letter`, `probability` and `prob_A` ... `prob_Y`.

Models that are data: a classifier is logged with `loader_module` this module and its
`data` a folder written by `LetterModel.save` (JSON settings, a `.keras` file loaded in safe
mode or a `.skops` file with a trust list), so loading it runs signlab's installed code and
nothing from the store. `classifier_problem` checks an MLmodel for that form before anything
is loaded. Models logged before this form pickle `LetterPyfunc` (a reference to the class,
nothing else); `pickle_problem` proves that of a pickle without running it.
"""

from __future__ import annotations

import io
import logging
import pickle
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

from signlab import config
from signlab.data.dataset import HEADER
from signlab.data.labels import LETTERS
from signlab.models.classifier import LetterModel, PayloadError

LABEL_COLUMN, PIXEL_COLUMNS = HEADER[0], HEADER[1:]
PIXEL_POSITION = {name: i for i, name in enumerate(PIXEL_COLUMNS)}  # constant-time name look-ups
INPUT_DOC = ("columns pixel1..pixel784 (any order, `label` ignored) or unnamed rows of 784 pixels, "
             "28x28 or 28x28x1 images; values 0-255")


def _few(names: list[str], limit: int = 5) -> str:
    """`n (a, b, c, ...)`: how many names and the first few."""
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"{len(names)} ({shown})"


def named_pixels(frame: pd.DataFrame) -> pd.DataFrame:
    """The pixel columns of a frame with named columns, in pixel1..pixel784 order.

    Names must be exactly pixel1..pixel784 plus an optional `label`; anything else is refused
    with the missing and unknown names, never read by position. Columns already in that order
    (the data set's, less `label`) are returned as they are: this runs on every served request.
    """
    names = [str(c) for c in frame.columns]
    if names == PIXEL_COLUMNS:
        return frame
    counts = Counter(names)
    missing = [c for c in PIXEL_COLUMNS if c not in counts]
    unknown = [c for c in counts if c not in PIXEL_POSITION and c != LABEL_COLUMN]
    repeated = [c for c, n in counts.items() if n > 1]
    if missing or unknown or repeated:
        problems = [f"{what} {_few(group)}" for what, group in
                    (("missing", missing), ("unknown", unknown), ("repeated", repeated)) if group]
        raise PayloadError(f"expected columns pixel1..pixel784 (any order, optional label): {'; '.join(problems)}")
    position = {name: i for i, name in enumerate(names)}
    return frame.iloc[:, [position[c] for c in PIXEL_COLUMNS]]


def pixels_of(model_input: Any) -> np.ndarray:
    """The pixel values of a pyfunc input, as an array for `as_images`: named columns by name,
    unnamed input (arrays, columns 0..n-1) by position."""
    if isinstance(model_input, dict):  # served `inputs`/`instances` with named columns
        try:
            model_input = pd.DataFrame({k: np.atleast_1d(v) for k, v in model_input.items()})
        except ValueError as exc:
            raise PayloadError(f"named inputs must be columns of equal length ({exc})") from None
    if not isinstance(model_input, pd.DataFrame):
        return np.asarray(model_input)
    unnamed = model_input.shape[1] > 0 and list(model_input.columns) == list(range(model_input.shape[1]))
    frame = model_input if unnamed else named_pixels(model_input)
    try:
        return frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"pixels must be numbers 0-255 ({exc})") from None


def predictions_frame(probs: np.ndarray) -> pd.DataFrame:
    """letter, probability, prob_A..prob_Y for each row of probabilities."""
    best = probs.argmax(axis=1)
    columns = {"letter": [LETTERS[i] for i in best], "probability": probs.max(axis=1)}
    columns.update({f"prob_{letter}": probs[:, i] for i, letter in enumerate(LETTERS)})
    return pd.DataFrame(columns)  # one constructor: adding 24 columns one by one cost ~4 ms a request


ERROR_CHARS = 200  # a served error's message at most: one short line, never the payload


class ShortError(MlflowException):
    """An error for the client as one short line. MLflow's scoring server (3.17,
    `scoring_server.invocations`) rewrites an MlflowException's message as
    `Failed to predict data '<the whole payload>'. Error: <message>`; this message keeps the
    value it was created with, so the client gets only that."""

    @property
    def message(self) -> str:
        return self._short

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_short"):  # set once by MlflowException.__init__; later rewrites ignored
            self._short = " ".join(str(value).split())[:ERROR_CHARS]


def predict_letters(model: LetterModel, model_input: Any) -> pd.DataFrame:
    """The classifier's answer for a pyfunc input; any failure as a ShortError (400 for bad
    input, 500 for anything else, whose traceback goes to the log, not to the client)."""
    try:
        probs = model.predict_proba(pixels_of(model_input))
    except PayloadError as exc:
        raise ShortError(f"bad input: {exc}", error_code=INVALID_PARAMETER_VALUE) from None
    except Exception as exc:  # noqa: BLE001 (the client gets one line; the log keeps the traceback)
        logging.getLogger(__name__).exception("the classifier failed")
        raise ShortError(f"the classifier failed ({type(exc).__name__}); details in the server's log",
                         error_code=INTERNAL_ERROR) from None
    return predictions_frame(probs)


class LetterPredictor:
    """What `_load_pyfunc` gives MLflow: a LetterModel behind pyfunc's `predict`."""

    def __init__(self, model: LetterModel):
        self.model = model

    def predict(self, model_input: Any, params: dict | None = None) -> pd.DataFrame:
        return predict_letters(self.model, model_input)


def _load_pyfunc(data_path: str) -> LetterPredictor:
    """MLflow's entry point for `loader_module` models: the folder `data_path` is data only."""
    config.quiet_defaults()  # the served model's edge: before a Keras model imports TensorFlow
    return LetterPredictor(LetterModel.load(Path(data_path)))


class LetterPyfunc(mlflow.pyfunc.PythonModel):
    """The classifier of models logged before the data-only form (a pickled `python_model`
    with artifact `letter_model`). Kept so that they load; new models do not use it."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        config.quiet_defaults()
        self.model = LetterModel.load(context.artifacts["letter_model"])

    # A DataFrame hint is one MLflow takes as is: no schema inferred from it, no coercion, and
    # no warning about a missing hint. Models logged since the input rules (no input schema)
    # get frames, arrays and dicts untouched and `pixels_of` checks them; older models' column
    # schema still turns arrays into frames and refuses int frames before this runs.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return predict_letters(self.model, model_input)


# ---- is an MLmodel a classifier whose loading runs only signlab's code? --------------------
LOADER_MODULE = __name__  # "signlab.models.pyfunc"
LEGACY_CLASSES = {("signlab.models.pyfunc", "LetterPyfunc"), ("signlab.pyfunc", "LetterPyfunc")}
# What MLflow 3.17 pickles with one: the type hints of its `predict` (`_predict_type_hints`).
LEGACY_HINTS = {("mlflow.models.signature", "_TypeHints"), ("pandas", "DataFrame"),
                ("pandas.core.frame", "DataFrame")}
# Opcodes that call a reachable class (or anything) with arguments, or reach objects outside
# the pickle: none of them is in a LetterPyfunc's pickle (NEWOBJ with no arguments and BUILD of
# a plain dict are), so none is allowed.
CALLING_OPCODES = {"REDUCE", "NEWOBJ_EX", "INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}
LEGACY_PICKLE = "python_model.pkl"
LEGACY_KEYS = {"loader_module", "python_model", "cloudpickle_version", "artifacts", "code", "env",
               "python_version", "streamable", "predict_fn", "model_config"}
DATA_KEYS = {"loader_module", "data", "code", "env", "python_version", "streamable", "predict_fn"}


def _inside(relative: Any) -> bool:
    """Whether a path from an MLmodel stays inside the model's folder."""
    if not isinstance(relative, str) or not relative:
        return False
    path = PurePosixPath(relative.replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and ":" not in relative


def classifier_problem(flavors: dict[str, Any]) -> str | None:
    """None for a signlab classifier whose loading runs no code from the store (the data-only
    form, or the old form whose pickle `pickle_problem` must then clear); else why not, short.

    `flavors` is the MLmodel's `flavors`. Only the `python_function` flavor is read by
    `mlflow.pyfunc.load_model`: its module must be signlab's, its data inside the model, and
    nothing that puts code on the path (`code`), runs a file (`model_code_path`) or unpickles."""
    conf = flavors.get(mlflow.pyfunc.FLAVOR_NAME) if isinstance(flavors, dict) else None
    if not isinstance(conf, dict):
        return "no python_function flavor"
    if conf.get("code"):
        return "it ships code (`code`) that loading would put on the import path"
    module = conf.get("loader_module")
    if module == LOADER_MODULE:
        if unknown := sorted(set(conf) - DATA_KEYS):
            return f"unexpected pyfunc settings {unknown[:3]}"
        return None if _inside(conf.get("data")) else "its data is not a folder inside the model"
    if module == "mlflow.pyfunc.model" and conf.get("python_model") == LEGACY_PICKLE:
        artifacts = conf.get("artifacts")
        if set(conf) - LEGACY_KEYS or conf.get("model_config") or not isinstance(artifacts, dict) \
                or set(artifacts) != {"letter_model"} \
                or not _inside((artifacts["letter_model"] or {}).get("path")):
            return "a python_model pickle that is not signlab's letter classifier"
        return None  # the old form: the pickle itself is checked next (`pickle_problem`)
    if conf.get("python_model") or conf.get("cloudpickle_version"):
        return "a python_model pickle (loading it runs code from the store)"
    if conf.get("model_code_path"):
        return "a models-from-code file (loading it runs that file)"
    return f"its loader is {str(module)[:60]!r}, not {LOADER_MODULE}"


class _OnlyLetterPyfunc(pickle.Unpickler):
    """An unpickler that reaches no class but LetterPyfunc and its type hints (Python's
    "restricting globals"); with CALLING_OPCODES refused, it can only create them empty."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in LEGACY_CLASSES | LEGACY_HINTS:
            raise pickle.UnpicklingError(f"it refers to {module[:60]}.{name[:60]}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it uses persistent ids")


def pickle_problem(path: Path) -> str | None:
    """None if the old form's pickle is an empty LetterPyfunc and nothing more: its opcodes
    are read without running them (no call with arguments), then it is unpickled with only
    LetterPyfunc and its type hints reachable. Loading it then runs signlab's code only."""
    import pickletools

    try:
        data = Path(path).read_bytes()
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name in CALLING_OPCODES:
                raise pickle.UnpicklingError(f"it calls {opcode.name}")
        found = _OnlyLetterPyfunc(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, OSError) as exc:
        return f"its python_model pickle is not signlab's classifier alone ({str(exc)[:100]})"
    if type(found) is not LetterPyfunc or set(vars(found)) - {"_predict_type_hints"}:
        return "its python_model pickle is not a bare LetterPyfunc"
    return None
