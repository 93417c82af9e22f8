"""signlab: MLflow-tracked hyperparameter studies for Sign Language MNIST.

Importing it changes nothing in the process: the quiet defaults for TensorFlow and MLflow are
set at the edges (the CLI, the served model's loader)."""

__version__ = "0.1.0"
