"""Search: study files, search spaces, Optuna storage, the study runner, its workers, recovery and refit."""
