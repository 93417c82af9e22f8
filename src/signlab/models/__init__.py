"""Models: specs and presets, model families (Keras CNNs, scikit-learn MLPs, KNN), training,
augmentation, evaluation and the letter classifier.

What other layers may use of this package is `__all__`: each name is read from its module when
first asked for (`from signlab.models import X` imports no more than X's module needs), and
`tests/test_structure.py` checks that other layers import nothing else from here.
"""

from signlab.exports import lazy_exports

# name -> the module that defines it
__all__, __getattr__ = lazy_exports(__name__, {
    "as_images": "signlab.models.classifier",
    "classifier_problem": "signlab.models.pyfunc",
    "Comparison": "signlab.models.intervals",
    "confusion_chart": "signlab.models.evaluate",
    "confusion_figure": "signlab.models.evaluate",
    "EpochHook": "signlab.models.train",
    "evaluate": "signlab.models.evaluate",
    "Evaluation": "signlab.models.evaluate",
    "FAMILIES": "signlab.models.family",
    "family": "signlab.models.family",
    "family_of": "signlab.models.family",
    "fit": "signlab.models.train",
    "FitResult": "signlab.models.train",
    "free_graph": "signlab.models.train",
    "group_interval": "signlab.models.intervals",
    "INPUT_DOC": "signlab.models.pyfunc",
    "Interval": "signlab.models.intervals",
    "latency": "signlab.models.evaluate",
    "learning_curves_chart": "signlab.models.evaluate",
    "LEGACY_PICKLE": "signlab.models.pyfunc",
    "LetterPyfunc": "signlab.models.pyfunc",
    "LOADER_MODULE": "signlab.models.pyfunc",
    "make_spec": "signlab.models.presets",
    "paired_comparison": "signlab.models.intervals",
    "PayloadError": "signlab.models.classifier",
    "perturb": "signlab.models.augment",
    "pickle_problem": "signlab.models.pyfunc",
    "PIXEL_COLUMNS": "signlab.models.pyfunc",
    "pixels_of": "signlab.models.pyfunc",
    "predictions_frame": "signlab.models.pyfunc",
    "PRESETS": "signlab.models.presets",
    "size_thread_pools": "signlab.models.train",
    "Spec": "signlab.models.presets",
    "spec_digest": "signlab.models.presets",
    "SPECS": "signlab.models.presets",
    "whole_file_problem": "signlab.models.train",
})
