"""Runs: one MLflow run per training (lifecycle, params, datasets, models) and the reference rows.

What other layers may use of this package is `__all__`: each name is read from its module when
first asked for (`from signlab.runs import X` imports no more than X's module needs), and
`tests/test_structure.py` checks that other layers import nothing else from here.
"""

from signlab.exports import lazy_exports

# name -> the module that defines it
__all__, __getattr__ = lazy_exports(__name__, {
    "best_clean_reference": "signlab.runs.references",
    "correct_by_row": "signlab.runs.predictions",
    "Data": "signlab.runs.job",
    "finished_run": "signlab.runs.references",
    "load_references": "signlab.runs.references",
    "log_inputs": "signlab.runs.job",
    "log_system_metrics": "signlab.runs.lifecycle",
    "log_to_active_run": "signlab.runs.lifecycle",
    "mark_classic_ml": "signlab.runs.store",
    "parse_seeds": "signlab.runs.references",
    "plan": "signlab.runs.references",
    "prepare_data": "signlab.runs.job",
    "print_epoch": "signlab.runs.job",
    "read_predictions": "signlab.runs.predictions",
    "Reference": "signlab.runs.references",
    "references_session": "signlab.runs.references",
    "run_job": "signlab.runs.job",
    "select_rows": "signlab.runs.references",
    "setup": "signlab.runs.store",
    "train_and_log": "signlab.runs.job",
    "use_experiment": "signlab.runs.store",
    "watched_test": "signlab.runs.references",
})
