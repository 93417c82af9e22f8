"""Serving: the report, the model registry and its gate, predictions, servers and dashboards.

What other layers may use of this package is `__all__`: each name is read from its module when
first asked for (`from signlab.serving import X` imports no more than X's module needs), and
`tests/test_structure.py` checks that other layers import nothing else from here.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it
_HOME = {
    "add_user": "signlab.serving.server",
    "best_run": "signlab.serving.registry",
    "check_inputs": "signlab.serving.predict",
    "list_users": "signlab.serving.server",
    "predict": "signlab.serving.predict",
    "promote": "signlab.serving.registry",
    "run_report": "signlab.serving.report",
    "serve_dashboard": "signlab.serving.dashboard",
    "serve_tracking": "signlab.serving.server",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """PEP 562: the public names, imported on first use."""
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'signlab.serving' has no attribute {name!r}")
