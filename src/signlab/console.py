"""What the console shows: signlab's own lines and the libraries' warnings and errors; their
informational lines (MLflow's INFO, TensorFlow's start-up notices) only with `--verbose` or
$SIGNLAB_VERBOSE=1. Set once, at the CLI's edge, before MLflow or TensorFlow is imported."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

from signlab import config

# TensorFlow 2.21 logs its oneDNN notice through absl before TF_CPP_MIN_LOG_LEVEL takes
# effect (measured: levels 1-3 all print it), so it is filtered out of TensorFlow's import.
TF_NOTICES = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on")


def configure(verbose: bool) -> None:
    """Quiet the libraries' informational lines unless `verbose`; child processes (workers)
    inherit the choice through the environment."""
    mlflow_level = config.library_logging(verbose)
    if mlflow_level is None:
        return
    if "mlflow" in sys.modules:  # imported already (in a test, say)
        logging.getLogger("mlflow").setLevel(mlflow_level.upper())
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Has the import of `tensorflow` run with TF_NOTICES filtered from stderr; steps aside
    once it succeeded (an interrupted import is filtered again when retried)."""

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        index = sys.meta_path.index(self)
        del sys.meta_path[index]  # the other finders find it
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(index, self)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def quietly(module: ModuleType) -> None:
                with stderr_without(TF_NOTICES):
                    exec_module(module)
                if self in sys.meta_path:
                    sys.meta_path.remove(self)

            spec.loader.exec_module = quietly  # type: ignore[method-assign]
        return spec


@contextmanager
def stderr_without(notices: Sequence[str]) -> Iterator[None]:
    """Capture file descriptor 2 (C++ libraries write there directly) while the block runs,
    then write back every line that contains none of `notices`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not any(n in line for n in notices)))
            sys.stderr.flush()
