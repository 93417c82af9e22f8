"""signlab: MLflow-tracked hyperparameter studies for Sign Language MNIST."""

__version__ = "0.1.0"
