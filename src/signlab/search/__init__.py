"""Search: study files, search spaces, Optuna storage, the study runner, its workers, recovery and refit.

What other layers may use of this package is `__all__`: each name is read from its module when
first asked for (`from signlab.search import X` imports no more than X's module needs), and
`tests/test_structure.py` checks that other layers import nothing else from here.
"""

from signlab.exports import lazy_exports

# name -> the module that defines it
__all__, __getattr__ = lazy_exports(__name__, {
    "checked_inputs": "signlab.search.setup",
    "load_study_config": "signlab.search.study_config",
    "open_storage": "signlab.search.storage",
    "Overrides": "signlab.search.setup",
    "refit_launcher": "signlab.search.workers",
    "refit_study": "signlab.search.study",
    "resolved_config": "signlab.search.setup",
    "run_study": "signlab.search.study",
    "run_workers": "signlab.search.workers",
})
