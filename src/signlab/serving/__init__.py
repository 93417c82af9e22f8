"""Serving: the report, the model registry and its gate, predictions, servers and dashboards."""
