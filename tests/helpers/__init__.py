"""What several test modules share: child processes of signlab and MLflow, a tiny study file,
runs grouped by role, fresh MLflow stores, and synthetic data. Import as `from helpers import ...`."""

from helpers.processes import (
    assert_one_line_error,
    free_port,
    mlflow_server,
    run_cli,
    subprocess_env,
    wait_for_http,
    without_browser,
)
from helpers.runs import NETWORK_SCRIPT, check_offline_charts, check_study, runs_by_role
from helpers.stores import mlflow_store
from helpers.studies import tiny_study, wait_for_running_trials
from helpers.synthetic import synthetic_files

__all__ = ["NETWORK_SCRIPT", "assert_one_line_error", "check_offline_charts", "check_study", "free_port",
           "mlflow_server", "mlflow_store", "run_cli", "runs_by_role", "subprocess_env", "synthetic_files", "tiny_study",
           "wait_for_http", "wait_for_running_trials", "without_browser"]
