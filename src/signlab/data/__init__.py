"""Data: the Sign Language MNIST files, their checks, labels, splits, variant groups and profile.

What other layers may use of this package is `__all__`: each name is read from its module when
first asked for (`from signlab.data import X` imports no more than X's module needs), and
`tests/test_structure.py` checks that other layers import nothing else from here.
"""

from signlab.exports import lazy_exports

# name -> the module that defines it
__all__, __getattr__ = lazy_exports(__name__, {
    "cached_groups": "signlab.data.groups",
    "class_counts": "signlab.data.profile",
    "DataFiles": "signlab.data.dataset",
    "DataSettings": "signlab.data.settings",
    "DEFAULT_FRACTION": "signlab.data.validation",
    "DEFAULT_STRATEGY": "signlab.data.validation",
    "encode": "signlab.data.labels",
    "fetch": "signlab.data.fetch",
    "find_split_file": "signlab.data.dataset",
    "HEADER": "signlab.data.dataset",
    "LABELS": "signlab.data.labels",
    "leakage": "signlab.data.groups",
    "Leakage": "signlab.data.groups",
    "LETTERS": "signlab.data.labels",
    "load_files": "signlab.data.dataset",
    "load_split": "signlab.data.dataset",
    "N_CLASSES": "signlab.data.labels",
    "scale": "signlab.data.splits",
    "sha256_file": "signlab.data.dataset",
    "Split": "signlab.data.dataset",
    "split_leakage": "signlab.data.validation",
    "STRATEGIES": "signlab.data.splits",
    "Strategy": "signlab.data.splits",
    "subset_indices": "signlab.data.splits",
    "validation_rows": "signlab.data.validation",
    "ValidationRows": "signlab.data.validation",
    "write_profile": "signlab.data.profile",
})
