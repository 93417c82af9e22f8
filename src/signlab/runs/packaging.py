"""Logged models: every run's model in its own flavour (`model`) and as the letters pyfunc
(`classifier`), with pinned requirements. The classifier is data: its MLmodel names the
installed `signlab.models.pyfunc` as loader and its data is a `LetterModel.save` folder
(JSON, `.keras`, `.skops`), so loading it runs no code from the store (no pickle)."""

from __future__ import annotations

import importlib
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from signlab.contract import CLASSIFIER_ARTIFACT, CLASSIFIER_URI_TAG, MODEL_ARTIFACT
from signlab.runs.store import quiet_loggers


def requirements() -> list[str]:
    """Pinned requirements for logged models (skips MLflow's slow inference)."""
    names = ["mlflow", "tensorflow-cpu", "keras", "scikit-learn", "skops", "numpy", "pandas"]
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def log_models(model: Any, example_images: np.ndarray) -> str:
    """Log the model in its own flavour (`model`) and as the letters pyfunc (`classifier`).

    Returns the classifier's model URI (also set as the run tag `signlab.classifier_uri`).
    """
    with warnings.catch_warnings(), quiet_loggers("mlflow.pyfunc", "mlflow.models"):
        warnings.simplefilter("ignore")  # MLflow's advice on type hints and pickling
        return _log_models(model, example_images)


def _log_models(model: Any, example_images: np.ndarray) -> str:
    from mlflow.models import ModelSignature, infer_signature

    from signlab.data.splits import scale
    from signlab.models.pyfunc import INPUT_DOC, LOADER_MODULE, PIXEL_COLUMNS, predictions_frame

    reqs = requirements()
    probs = model.predict_proba(example_images[:2])
    # The native model, in its family's MLflow flavour, on input as it was trained on. Its
    # signature says that input's shape and type; no input example: MLflow would load the model
    # back and predict on it to check the example (about 1 s a run, a trace of a new graph),
    # and what users send is the classifier's input, whose example is kept and checked below.
    scaled = scale(example_images[:2], model.normalise)
    x = model.kind.native_input(scaled).astype(model.kind.signature_dtype)
    flavour = importlib.import_module(f"mlflow.{model.kind.flavour}")
    native = model.kind.predict_proba(model.estimator, scaled)
    flavour.log_model(model.estimator, name=MODEL_ARTIFACT, pip_requirements=reqs,
                      signature=infer_signature(x, native), **model.kind.flavour_options)
    # The example is what users have: data-set rows as pandas reads them (int64 pixel columns).
    frame = pd.DataFrame(example_images[:2].reshape(2, -1).astype(np.int64), columns=PIXEL_COLUMNS)
    # No input schema: MLflow 3.17 has none that takes int frames, arrays of rows and 28x28
    # images alike (a column schema turns arrays into frames named 0..783 and refuses int64 as
    # double; a tensor schema reads frames by position). The model checks its input
    # (`pixels_of`); the input is documented by the example and the MLmodel metadata.
    signature = ModelSignature(outputs=infer_signature(frame, predictions_frame(probs)).outputs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / "letter_model")
        info = mlflow.pyfunc.log_model(
            name=CLASSIFIER_ARTIFACT, loader_module=LOADER_MODULE, data_path=str(folder),
            input_example=frame, signature=signature, pip_requirements=reqs, metadata={"input": INPUT_DOC},
        )
    mlflow.set_tag(CLASSIFIER_URI_TAG, info.model_uri)
    return info.model_uri
