"""Data: the Sign Language MNIST files, their checks, labels, splits, variant groups and profile."""
