"""What several test modules share: child processes of signlab and MLflow, a tiny study file,
and runs grouped by role. Import as `from helpers import ...`."""

from helpers.processes import assert_one_line_error, free_port, mlflow_server, run_cli, subprocess_env, wait_for_http
from helpers.runs import runs_by_role
from helpers.studies import tiny_study, wait_for_running_trials

__all__ = ["assert_one_line_error", "free_port", "mlflow_server", "run_cli", "runs_by_role", "subprocess_env", "tiny_study",
           "wait_for_http", "wait_for_running_trials"]
