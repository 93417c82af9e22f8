"""Serving: the report, the model registry and its gate, predictions, servers and dashboards.

What other layers may use of this package is `__all__`: each name is read from its module when
first asked for (`from signlab.serving import X` imports no more than X's module needs), and
`tests/test_structure.py` checks that other layers import nothing else from here.
"""

from signlab.exports import lazy_exports

# name -> the module that defines it
__all__, __getattr__ = lazy_exports(__name__, {
    "add_user": "signlab.serving.server",
    "best_run": "signlab.serving.registry",
    "check_inputs": "signlab.serving.predict",
    "gate_score": "signlab.serving.registry",
    "list_users": "signlab.serving.server",
    "predict": "signlab.serving.predict",
    "promote": "signlab.serving.registry",
    "run_report": "signlab.serving.report",
    "serve_dashboard": "signlab.serving.dashboard",
    "serve_tracking": "signlab.serving.server",
})
