"""Runs: one MLflow run per training (lifecycle, params, datasets, models) and the reference rows."""
