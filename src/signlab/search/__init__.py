"""Search: study files, search spaces, Optuna storage, the study runner, its workers, recovery and refit.

What other layers may use of this package is `__all__`: each name is read from its module when
first asked for (`from signlab.search import X` imports no more than X's module needs), and
`tests/test_structure.py` checks that other layers import nothing else from here.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it
_HOME = {
    "checked_inputs": "signlab.search.setup",
    "load_study_config": "signlab.search.study_config",
    "open_storage": "signlab.search.storage",
    "Overrides": "signlab.search.setup",
    "refit_study": "signlab.search.study",
    "resolved_config": "signlab.search.setup",
    "run_study": "signlab.search.study",
    "run_workers": "signlab.search.workers",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """PEP 562: the public names, imported on first use."""
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'signlab.search' has no attribute {name!r}")
