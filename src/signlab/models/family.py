"""A model family as an object: what signlab does differently for a Keras CNN, a scikit-learn
MLP and a KNN lives here, behind one protocol, so that the rest of signlab asks a family
rather than testing a string. Following keras-tuner's `HyperModel` (build, then fit), a
family trains a spec into a model, predicts, counts, saves and loads it as data.

The registry imports no framework: each family imports TensorFlow or scikit-learn inside its
methods, when a model is first built, trained or loaded. A fourth family is one class here
(its spec beside the others in `models/presets.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel

from signlab.errors import UserError
from signlab.models.cnn import CNNSpec
from signlab.models.knn import KNNSpec
from signlab.models.mlp import MLPSpec

if TYPE_CHECKING:
    from signlab.models.classifier import LetterModel
    from signlab.models.train import FitResult

EpochHook = Callable[[int, dict[str, float]], None]
Arrays = tuple[np.ndarray, np.ndarray]  # uint8 images (N, 28, 28), labels 0-24

# Types skops must trust to load a scikit-learn MLPClassifier.
SKOPS_TRUSTED_TYPES = [
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
]


class Family(Protocol):
    """What signlab needs of a model family."""

    name: str
    spec_type: type[BaseModel]
    file: str  # the model's file name inside a `LetterModel.save` folder
    flavour: str  # the MLflow flavour module that logs the native model ("tensorflow", "sklearn")
    flavour_options: dict[str, Any]  # what that flavour's log_model needs besides the model
    signature_dtype: str  # the input dtype the logged native model declares (float32 tensors; float64 rows)

    # A study's search space names a depth and a width per layer (`n_blocks` and `filters_1`,
    # `filters_2`... for a CNN); None where the family has no layers to search.
    depth_key: str | None
    width_key: str | None
    default_depth: int
    counts_before_training: bool  # whether `count_before_training` can size a spec (a study's max_params)
    searchable: frozenset[str]  # what a study's space may search (depth and width keys drawn per layer)
    default_preset: str | None  # the preset a spec of this family starts from when no preset is named
    epochs_matter: bool  # whether --epochs means anything (a KNN stores the images once)

    def count_before_training(self, spec: Any) -> int | None:
        """The parameters a spec's model will have, without training it (None: not known)."""
        ...

    def spec_fields(self, values: dict[str, Any]) -> dict[str, Any]:
        """Spec fields from a study's space-level values (`n_blocks`, `filters`, `conv_dropout`...):
        what one trial trains, before `epochs` is set."""
        ...

    def fit(self, spec: Any, train: Arrays, val: Arrays | None, seed: int, hooks: Sequence[EpochHook]) -> FitResult:
        """Train `spec` on `train`, validating on `val` after every epoch (None: the whole file,
        exactly `spec.epochs` epochs, the last kept); each epoch's metrics go to `hooks`.

        Args:
            spec: a spec of this family (`spec_type`).
            train: training images and labels.
            val: validation images and labels, or None.
            seed: seeds initialisation, shuffling and augmentation.
            hooks: called as hook(epoch, metrics) after each epoch; one may raise to stop.

        Returns:
            The trained model (the kept epoch's weights), its history and training time.
        """
        ...

    def whole_file_problem(self, spec: Any) -> str | None:
        """Why `spec` cannot train without validation rows, or None."""
        ...

    def predict_proba(self, estimator: Any, x: np.ndarray) -> np.ndarray:
        """Class probabilities for scaled images `x` (N, 28, 28)."""
        ...

    def native_input(self, x: np.ndarray) -> np.ndarray:
        """Scaled images (N, 28, 28) as the native model takes them."""
        ...

    def n_params(self, estimator: Any) -> int:
        """The parameters (or stored values) the model predicts from."""
        ...

    def summary(self, model: LetterModel) -> str:
        """A few lines describing the trained model (the run's model_summary.txt)."""
        ...

    def save(self, estimator: Any, path: Path) -> None:
        """Write the native model to `path`, as data."""
        ...

    def load(self, path: Path) -> Any:
        """Read a model written by `save`, running no code from the file."""
        ...

    def preload(self) -> None:
        """Import the family's framework now (before trials start their heartbeats)."""
        ...

    def compute_threads(self) -> int:
        """The threads this process's framework computes with, once it has trained (a seed's
        figures depend on them: the order of floating-point sums)."""
        ...


class KerasCNN:
    """Convolutional networks in Keras 3 (TensorFlow backend)."""

    name: ClassVar[str] = "cnn"
    spec_type: ClassVar[type[BaseModel]] = CNNSpec
    file: ClassVar[str] = "model.keras"
    flavour: ClassVar[str] = "tensorflow"
    flavour_options: ClassVar[dict[str, Any]] = {}
    signature_dtype: ClassVar[str] = "float32"
    depth_key: ClassVar[str | None] = "n_blocks"
    width_key: ClassVar[str | None] = "filters"
    default_depth: ClassVar[int] = 3
    counts_before_training: ClassVar[bool] = True
    searchable: ClassVar[frozenset[str]] = frozenset({
        "n_blocks", "filters", "batch_norm", "conv_dropout", "dense_units", "dense_dropout", "l2_dense", "l2_conv",
        "learning_rate", "batch_size", "augment", "adaptive_lr"})
    default_preset: ClassVar[str | None] = "cnn3"  # the paper's best CNN
    epochs_matter: ClassVar[bool] = True

    def count_before_training(self, spec: CNNSpec) -> int | None:
        from signlab.models.cnn import cnn_params

        return cnn_params(spec)  # built (not trained) to count

    def spec_fields(self, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        depth = int(values.pop(self.depth_key, self.default_depth))
        filters = per_layer(values.pop(self.width_key, 32), depth)
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
        return values

    def fit(self, spec: CNNSpec, train: Arrays, val: Arrays | None, seed: int, hooks: Sequence[EpochHook]) -> FitResult:
        from signlab.models.keras_training import fit_cnn

        return fit_cnn(spec, train, val, seed, list(hooks))

    def whole_file_problem(self, spec: CNNSpec) -> str | None:
        if spec.adaptive_lr and not spec.lr_schedule:
            return ("its learning rate adapts to validation loss (adaptive_lr); fix it in advance with "
                    "--set 'lr_schedule=[...]' (one rate per epoch) or train with --no-adaptive-lr")
        if spec.early_stopping:
            return _EARLY_STOPPING
        return None

    def predict_proba(self, estimator: Any, x: np.ndarray) -> np.ndarray:
        from signlab.models.keras_training import predict_proba

        return predict_proba(estimator, self.native_input(x))

    def native_input(self, x: np.ndarray) -> np.ndarray:
        return x[..., None]

    def n_params(self, estimator: Any) -> int:
        return int(estimator.count_params())

    def summary(self, model: LetterModel) -> str:
        lines: list[str] = []
        model.estimator.summary(print_fn=lambda line, *a, **k: lines.append(line))
        return f"params: {model.n_params} (weights; Keras' totals below also count optimizer state)\n" + "\n".join(lines)

    def save(self, estimator: Any, path: Path) -> None:
        estimator.save(path)

    def load(self, path: Path) -> Any:
        import keras

        return keras.saving.load_model(path, compile=False, safe_mode=True)  # no lambdas or code in its config

    def preload(self) -> None:
        import keras  # noqa: F401

    def compute_threads(self) -> int:
        import tensorflow as tf

        from signlab.config import machine_cores

        return tf.config.threading.get_intra_op_parallelism_threads() or machine_cores()  # 0: TensorFlow's default


class _ScikitLearn:
    """What scikit-learn classifiers share: flat pixel rows in, skops files out."""

    file: ClassVar[str] = "model.skops"
    counts_before_training: ClassVar[bool] = False

    def count_before_training(self, spec: Any) -> int | None:
        return None
    flavour: ClassVar[str] = "sklearn"
    flavour_options: ClassVar[dict[str, Any]] = {"skops_trusted_types": SKOPS_TRUSTED_TYPES}
    signature_dtype: ClassVar[str] = "float64"  # NumPy's and pandas' default, as rows come

    def predict_proba(self, estimator: Any, x: np.ndarray) -> np.ndarray:
        return estimator.predict_proba(self.native_input(x))

    def native_input(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)

    def save(self, estimator: Any, path: Path) -> None:
        import skops.io as sio

        sio.dump(estimator, path)

    def load(self, path: Path) -> Any:
        import skops.io as sio

        return sio.load(path, trusted=SKOPS_TRUSTED_TYPES)  # skops' defaults and these types only, never pickle

    def preload(self) -> None:
        import sklearn  # noqa: F401

    def compute_threads(self) -> int:
        from threadpoolctl import threadpool_info  # scikit-learn's own way to read its pools

        return max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)


class ScikitMLP(_ScikitLearn):
    """scikit-learn's MLPClassifier, trained one epoch at a time."""

    name: ClassVar[str] = "mlp"
    spec_type: ClassVar[type[BaseModel]] = MLPSpec
    depth_key: ClassVar[str | None] = "n_layers"
    width_key: ClassVar[str | None] = "units"
    default_depth: ClassVar[int] = 2
    searchable: ClassVar[frozenset[str]] = frozenset({
        "n_layers", "units", "alpha", "learning_rate", "batch_size", "augment", "augment_copies"})
    default_preset: ClassVar[str | None] = None  # MLPSpec's own defaults
    epochs_matter: ClassVar[bool] = True

    def spec_fields(self, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        depth = int(values.pop(self.depth_key, self.default_depth))
        values["hidden_layers"] = per_layer(values.pop(self.width_key, 128), depth)
        return values

    def fit(self, spec: MLPSpec, train: Arrays, val: Arrays | None, seed: int, hooks: Sequence[EpochHook]) -> FitResult:
        from signlab.models.train import fit_mlp

        return fit_mlp(spec, train, val, seed, list(hooks))

    def whole_file_problem(self, spec: MLPSpec) -> str | None:
        return _EARLY_STOPPING if spec.early_stopping else None

    def n_params(self, estimator: Any) -> int:
        from signlab.models.mlp import count_params

        return count_params(estimator)

    def summary(self, model: LetterModel) -> str:
        clf = model.estimator
        shapes = [w.shape for w in clf.coefs_]
        return (f"MLPClassifier(hidden_layer_sizes={clf.hidden_layer_sizes}, alpha={clf.alpha})\n"
                f"layers: {' -> '.join(str(s[0]) for s in shapes)} -> {shapes[-1][1]}\n"
                f"params: {model.n_params}\n")


class ScikitKNN(_ScikitLearn):
    """scikit-learn's KNeighborsClassifier: one "epoch" stores the training images."""

    name: ClassVar[str] = "knn"
    spec_type: ClassVar[type[BaseModel]] = KNNSpec
    depth_key: ClassVar[str | None] = None
    width_key: ClassVar[str | None] = None
    default_depth: ClassVar[int] = 0
    searchable: ClassVar[frozenset[str]] = frozenset()  # not searched by studies
    default_preset: ClassVar[str | None] = None
    epochs_matter: ClassVar[bool] = False

    def spec_fields(self, values: dict[str, Any]) -> dict[str, Any]:
        return dict(values)

    def fit(self, spec: KNNSpec, train: Arrays, val: Arrays | None, seed: int, hooks: Sequence[EpochHook]) -> FitResult:
        from signlab.models.train import fit_knn

        return fit_knn(spec, train, val, list(hooks))

    def whole_file_problem(self, spec: KNNSpec) -> str | None:
        return None

    def n_params(self, estimator: Any) -> int:
        from signlab.models.knn import count_params

        return count_params(estimator)

    def summary(self, model: LetterModel) -> str:
        clf = model.estimator
        return (f"KNeighborsClassifier(n_neighbors={clf.n_neighbors}, weights={clf.weights!r}, algorithm={clf.algorithm!r})\n"
                f"stored: {clf.n_samples_fit_} training images of {clf.n_features_in_} pixels\n"
                f"params: {model.n_params} (the stored pixels and labels; nothing is learned)\n")


def per_layer(value: Any, depth: int) -> list[int]:
    """A width per layer: one value for all of them, or the first `depth` of a list."""
    if isinstance(value, list):
        if len(value) < depth:
            raise ValueError(f"{len(value)} widths given for {depth} layers")
        return [int(v) for v in value[:depth]]
    return [int(value)] * depth


_EARLY_STOPPING = ("it stops early on validation (early_stopping); set the epochs it should run with "
                   "--set early_stopping=false --epochs N")

FAMILIES: dict[str, Family] = {f.name: f for f in (KerasCNN(), ScikitMLP(), ScikitKNN())}


def family(name: str) -> Family:
    """The family called `name` (cnn, mlp, knn)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(f"no model family {name!r} (known: {', '.join(FAMILIES)})") from None


def family_of(spec: BaseModel) -> Family:
    """The family a spec belongs to."""
    return family(spec.family)  # type: ignore[attr-defined]
