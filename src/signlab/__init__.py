"""signlab: MLflow-tracked hyperparameter studies for Sign Language MNIST."""

from signlab import config

config.quiet_defaults()

__version__ = "0.1.0"
