"""Every training is an MLflow run: params, stepped metrics, artifacts, models, datasets, tags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from helpers import mlflow_store, subprocess_env
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from signlab.cli import app
from signlab.data import DataSettings
from signlab.data.labels import LETTERS, label_to_letter
from signlab.models.presets import make_spec
from signlab.runs import lifecycle
from signlab.runs import store as tracking_store
from signlab.runs.job import prepare_data, train_and_log

ROOT = Path(__file__).resolve().parents[1]
SUBSET = 15  # images per class: 360 from each file
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("data_dir")]  # trains on the real data


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return mlflow_store(tmp_path_factory.mktemp('mlflow'))


@pytest.fixture(scope="module")
def trained(store) -> dict[str, str]:
    """Train cnn3 (augmented) and nn2 for 2 epochs through the CLI; run ids by preset."""
    runner = CliRunner()
    ids = {}
    for args in (["--preset", "cnn3", "--augment", "--adaptive-lr"], ["--family", "mlp", "--preset", "nn2"]):
        result = runner.invoke(app, ["train", *args, "--epochs", "2", "--subset", str(SUBSET),
                                     "--tracking-uri", store, "--experiment", "runs-test", "--seed", "3"])
        assert result.exit_code == 0, result.output
        ids[args[args.index("--preset") + 1]] = result.output.split("run ")[1].split(":")[0]
    return ids


@pytest.mark.parametrize("preset", ["cnn3", "nn2"])
def test_run_has_params_metrics_tags(trained, store, preset):
    client = MlflowClient(store)
    run = client.get_run(trained[preset])
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["seed"] == "3" and params["subset"] == str(SUBSET) and params["epochs"] == "2"
    assert int(params["n_train"]) + int(params["n_val"]) == 24 * SUBSET and params["n_test"] == str(24 * SUBSET)
    if preset == "cnn3":
        assert params["blocks.n"] == "4" and params["blocks.1.filters"] == "64" and params["augment"] == "true"
        assert params["adaptive_lr"] == "true" and metrics["n_params"] == 39824
    else:
        assert params["hidden_layers"] == "[256, 128]" and params["early_stopping"] == "true"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0, 1], key
    for key in ("test_accuracy", "test_f1_macro", "test_f1_weighted", "test_aug_accuracy",
                 "final_val_accuracy", "final_val_f1_macro",
                "n_params", "train_seconds", "latency_ms", "predict_seconds"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert tags["family"] == make_spec(preset).family and tags["preset"] == preset
    assert len(tags["git_commit"]) == 40 or tags["git_commit"] is None


@pytest.mark.parametrize("preset", ["cnn3", "nn2"])
def test_run_artifacts_and_datasets(trained, store, preset):
    client = MlflowClient(store)
    run_id = trained[preset]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"confusion_matrix.png", "learning_curves.png",
            "classification_report.txt", "classification_report.json", "model_summary.txt"} <= names
    assert not [name for name in names if name.endswith(".html")], "charts as PNG, curves in MLflow's own charts"
    png = Path(client.download_artifacts(run_id, "confusion_matrix.png")).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    report = Path(client.download_artifacts(run_id, "classification_report.txt")).read_text()
    assert "worst confusions:" in report and " Y " in report
    summary = Path(client.download_artifacts(run_id, "model_summary.txt")).read_text()
    expected = "params: 39824" if preset == "cnn3" else "params: 236952"
    assert expected in summary
    inputs = client.get_run(run_id).inputs.dataset_inputs
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}
    assert set(by_context) == {"training", "validation", "test"}
    assert all(d.digest for d in by_context.values())
    assert by_context["test"].name == "sign_mnist_test"


@pytest.mark.parametrize("preset", ["cnn3", "nn2"])
def test_logged_models_predict_letters(trained, store, preset, test_split):
    from signlab.data.splits import stratified_subset

    mlflow.set_tracking_uri(store)
    client = MlflowClient(store)
    run = client.get_run(trained[preset])
    classifier = mlflow.pyfunc.load_model(run.data.tags["signlab.classifier_uri"])
    images, labels = stratified_subset(test_split.images, test_split.labels, SUBSET, seed=3)
    import pandas as pd

    frame = pd.DataFrame(images.reshape(len(images), -1), columns=[f"pixel{i}" for i in range(1, 785)])
    out = classifier.predict(frame)
    assert set(out.columns[:2]) == {"letter", "probability"} and len(out.columns) == 26
    assert set(out["letter"]) <= set(LETTERS)
    assert np.allclose(out[[f"prob_{c}" for c in LETTERS]].sum(axis=1), 1.0, atol=1e-4)
    truth = [label_to_letter(v) for v in labels]
    accuracy = float(np.mean(out["letter"].to_numpy() == np.array(truth)))
    assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-9)
    # the flavour model ("model") loads as a pyfunc too, with its signature
    logged = mlflow.search_logged_models(filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list")
    assert {m.name for m in logged} == {"model", "classifier"}
    model = next(m for m in logged if m.name == "model")
    loaded = mlflow.pyfunc.load_model(model.model_uri)
    assert loaded.metadata.signature is not None
    x = images[:3].astype(np.float32) / 255.0
    pred = loaded.predict(x[..., None] if preset == "cnn3" else x.reshape(3, -1).astype(np.float64))
    assert np.asarray(pred).shape == ((3, 24) if preset == "cnn3" else (3,))  # probabilities / classes


def _run_status(store: str, name: str) -> str:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("runs-test")
    run = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.runName = '{name}'")[0]
    return run.info.status


@pytest.mark.parametrize("exc, status", [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_runs_that_raise_end_failed_or_killed(store, exc, status, trained, data_files):
    tracking_store.setup(store, "runs-test")
    data = prepare_data(data_files, DataSettings(subset=5))

    def explode(epoch, metrics):
        raise exc

    with pytest.raises(type(exc)):
        with lifecycle.tracked_run(run_name=f"raises-{status}"):
            train_and_log(make_spec("nn2", epochs=3), data, hooks=[explode])
    assert _run_status(store, f"raises-{status}") == status
    assert mlflow.active_run() is None


def test_mlproject_reference_entry_point(tmp_path, data_dir):
    uri = mlflow_store(tmp_path)
    env = subprocess_env(MLFLOW_TRACKING_URI=uri, SIGNLAB_DATA_DIR=str(data_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "reference", "--env-manager", "local",
         "--experiment-name", "ref", "-P", "model=nn2", "-P", "epochs=1", "-P", "subset=5"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ref").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    params = runs[0].data.params
    assert runs[0].data.tags["reference"] == "nn2" and params["hidden_layers"] == "[256, 128]"
    assert params["epochs"] == "1" and params["subset"] == "5" and params["augment"] == "false"
    assert "test_accuracy" in runs[0].data.metrics


def test_a_run_left_running_by_a_killed_process_is_ended_by_the_next_training(tmp_path, data_dir):
    """SIGKILL leaves a training's run RUNNING; the next training in the experiment ends it
    KILLED, saying so, but leaves alone the run of a training that is still alive. The two
    trainings are `signlab train` processes; the next one runs in this process."""
    import os
    import signal
    import time

    uri = mlflow_store(tmp_path)
    client = MlflowClient(uri)
    args = ("--subset", "20", "--seed", "1", "--tracking-uri", uri, "--data-dir", str(data_dir), "--experiment", "orphans")

    def running() -> list:
        experiment = client.get_experiment_by_name("orphans")
        return client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") if experiment else []

    def start_long_training(name: str) -> subprocess.Popen:
        command = ["train", *args, "--preset", "cnn2", "--epochs", "1000", "--run-name", name]
        return subprocess.Popen([sys.executable, "-m", "signlab", *command], env=subprocess_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def run_of(proc: subprocess.Popen) -> str:
        deadline = time.monotonic() + 120
        while not (mine := [r for r in running() if r.data.tags["signlab.worker"].endswith(f":{proc.pid}")]):
            assert proc.poll() is None and time.monotonic() < deadline, "the training's run never appeared"
            time.sleep(0.5)
        return mine[0].info.run_id

    alive, killed = start_long_training("long-alive"), start_long_training("long-killed")  # both start at once
    try:
        alive_run, killed_run = run_of(alive), run_of(killed)
        os.setpriority(os.PRIO_PROCESS, alive.pid, 19)  # alive, training on, leaving the cores to this test
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        assert client.get_run(killed_run).info.status == "RUNNING"
        result = CliRunner().invoke(app, ["train", *args, "--family", "mlp", "--preset", "nn2", "--epochs", "1"])
        assert result.exit_code == 0, result.output[-3000:]
        assert f"({killed_run}) was left RUNNING by process {killed.pid}, which is gone: ended KILLED" in result.output
        ended = client.get_run(killed_run)
        assert ended.info.status == "KILLED" and "left RUNNING by process" in ended.data.tags["signlab.repaired"]
        assert alive.poll() is None, "the long training ended on its own"
        assert client.get_run(alive_run).info.status == "RUNNING" and alive_run not in result.output
    finally:
        for proc in (alive, killed):
            proc.kill()
            proc.wait(timeout=30)


def test_whole_file_training_of_the_tiny_preset_keeps_the_last_epoch_and_logs_no_validation(store, data_dir):
    """`--val-fraction 0`: every training row trains, `val_strategy=none`, no validation
    figures; the test figure has its interval over photos and its predictions image by image.
    The preset is `tiny` (the cnn_tiny study's pick, issue 12), here with another seed: a
    network of at most 20,000 parameters (the full-data figures are in docs/results.md)."""
    import pandas as pd

    runner = CliRunner()
    result = runner.invoke(app, ["train", "--preset", "tiny", "--val-fraction", "0", "--epochs", "2", "--subset",
                                 str(SUBSET), "--tracking-uri", store, "--experiment", "whole-file", "--seed", "1",
                                 "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "no validation (whole file)" in result.output and "95% interval over photos" in result.output
    client = MlflowClient(store)
    run = client.get_run(result.output.split("run ")[1].split(":")[0])
    params, metrics = run.data.params, run.data.metrics
    assert params["val_strategy"] == "none" and params["n_val"] == "0" and params["n_train"] == str(24 * SUBSET)
    assert not [k for k in metrics if k.startswith(("val_", "final_val", "best_epoch"))], "no validation metrics"
    assert metrics["epochs_run"] == 2 and run.data.tags["signlab.quick"] == "true"
    assert metrics["n_params"] == 19_109 <= 20_000
    assert params["augment"] == "true" and params["seed"] == "1" and run.data.tags["preset"] == "tiny"
    assert metrics["test_accuracy_ci_low"] <= metrics["test_accuracy"] <= metrics["test_accuracy_ci_high"]
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "test_predictions.csv"))
    assert list(predictions.columns) == ["row", "group", "true", "predicted", "probability"]
    assert len(predictions) == 24 * SUBSET and predictions["row"].is_unique
    assert (predictions["true"] == predictions["predicted"]).mean() == pytest.approx(metrics["test_accuracy"])
    # a preset whose learning rate reads validation loss is refused, before any run
    refused = runner.invoke(app, ["train", "--preset", "cnn3", "--augment", "--adaptive-lr", "--val-fraction", "0",
                                  "--subset", str(SUBSET), "--tracking-uri", store, "--experiment", "whole-file"])
    assert refused.exit_code == 2 and "adaptive_lr" in refused.output and "lr_schedule" in refused.output
    assert len(client.search_runs([run.info.experiment_id])) == 1
