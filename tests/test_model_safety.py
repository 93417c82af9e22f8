"""Models that are data (issue 26): a registered model is loaded only if loading it runs
signlab's installed code and nothing from the store; `predict` streams CSVs and says what is
wrong with a path; served errors are one short line."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import free_port, mlflow_store, subprocess_env, wait_for_http
from mlflow.tracking import MlflowClient
from PIL import Image
from sklearn.neural_network import MLPClassifier
from typer.testing import CliRunner

from signlab.cli import app
from signlab.contract import CLASSIFIER_URI_TAG
from signlab.models.classifier import LetterModel
from signlab.models.pyfunc import PIXEL_COLUMNS, LetterPyfunc, ShortError, classifier_problem, pickle_problem
from signlab.serving import predict as predict_module


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    uri = mlflow_store(tmp_path_factory.mktemp('safety'))
    mlflow.set_tracking_uri(uri)
    # its Default experiment, whatever an earlier test in this process made active (another store's id)
    mlflow.set_experiment(experiment_id="0")
    return uri


@pytest.fixture(scope="module")
def tiny() -> LetterModel:
    """An MLP on random pixels: fast, and its letters are still a function of the pixels."""
    rng = np.random.default_rng(0)
    x = rng.random((96, 784))
    return LetterModel("mlp", MLPClassifier((8,), max_iter=5, random_state=0).fit(x, np.arange(96) % 24), True)


def _images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 28, 28)).astype(np.uint8)


@pytest.fixture(scope="module")
def data_model(store, tiny) -> str:
    """Today's form, logged as training does (`log_models`), registered as sign-mnist-mlp@champion."""
    from signlab.runs.packaging import log_models

    with mlflow.start_run() as run:
        uri = log_models(tiny, _images())
        mlflow.set_tags({"family": "mlp"})
    version = mlflow.register_model(uri, "sign-mnist-mlp")
    MlflowClient().set_registered_model_alias("sign-mnist-mlp", "champion", version.version)
    return run.info.run_id


def _log_pickled(python_model: mlflow.pyfunc.PythonModel, artifacts: dict | None = None) -> str:
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="classifier", python_model=python_model, artifacts=artifacts,
                                       pip_requirements=["mlflow"])
        mlflow.set_tags({"family": "cnn", CLASSIFIER_URI_TAG: info.model_uri})
    return run.info.run_id, info.model_uri


def _planted_class(marker: Path) -> type:
    """A pyfunc whose loading writes `marker` (defined here, so pickled by value: the
    attacker's code travels in the store)."""

    class Planted(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            Path(marker).write_text("ran")

        def predict(self, context, model_input, params=None):
            from signlab.models.pyfunc import predictions_frame

            return predictions_frame(np.full((len(model_input), 24), 1 / 24))

    return Planted


@pytest.fixture(scope="module")
def planted(store, tmp_path_factory) -> tuple[str, Path]:
    """The issue's case: registered as sign-mnist-cnn@champion, the model `predict` uses by default."""
    marker = tmp_path_factory.mktemp("planted") / "ran.txt"
    run_id, uri = _log_pickled(_planted_class(marker)())
    version = mlflow.register_model(uri, "sign-mnist-cnn")
    MlflowClient().set_registered_model_alias("sign-mnist-cnn", "champion", version.version)
    return run_id, marker


@pytest.fixture
def hand(tmp_path) -> Path:
    path = tmp_path / "hand.png"
    Image.fromarray(_images(1)[0]).save(path)
    return path


def _predict(*args: str, store: str):
    return CliRunner().invoke(app, ["predict", *args, "--tracking-uri", store])


# ---- refusing code ---------------------------------------------------------------------------
def test_planted_champion_is_refused_without_running_and_runs_only_when_trusted(store, planted, hand):
    _, marker = planted
    result = _predict(str(hand), store=store)
    assert result.exit_code == 2 and not marker.exists(), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "models:/sign-mnist-cnn@champion is not a signlab classifier that loads as data: a python_model pickle" \
        in lines[0] and "--trust-model" in lines[0], lines[0]
    result = _predict(str(hand), "--trust-model", store=store)
    assert marker.read_text() == "ran", result.output
    assert result.exit_code == 0 and result.output.startswith(f"{hand}: "), result.output
    marker.unlink()


def test_promote_refuses_a_planted_run_before_registering(store, planted):
    run_id, marker = planted
    client = MlflowClient()
    before = len(client.search_model_versions("name = 'sign-mnist-cnn'"))
    result = CliRunner().invoke(app, ["promote", "--run-id", run_id, "--tracking-uri", store])
    assert result.exit_code == 2 and "is not a signlab classifier that loads as data" in result.output, result.output
    assert len(client.search_model_versions("name = 'sign-mnist-cnn'")) == before and not marker.exists()


def test_a_pickle_disguised_as_the_old_classifier_is_refused(store, tiny, hand, tmp_path):
    """The old form's MLmodel (python_model + artifact letter_model), but the pickle is not
    a bare LetterPyfunc: the pickle is read without being run, and refused."""
    marker = tmp_path / "ran.txt"
    folder = tiny.save(tmp_path / "letter_model")
    _, uri = _log_pickled(_planted_class(marker)(), {"letter_model": str(folder)})
    result = _predict(str(hand), "--model", uri, store=store)
    assert result.exit_code == 2 and "python_model pickle is not signlab's classifier alone" in result.output, \
        result.output
    assert not marker.exists()


def test_old_signlab_models_still_load_through_the_check(store, tiny, hand, tmp_path):
    """Models logged before the data-only form pickle a bare LetterPyfunc: proven, then loaded."""
    folder = tiny.save(tmp_path / "letter_model")
    _, uri = _log_pickled(LetterPyfunc(), {"letter_model": str(folder)})
    result = _predict(str(hand), "--model", uri, "--json", store=store)
    assert result.exit_code == 0, result.output
    expected = tiny.predict_proba(np.asarray(Image.open(hand))[None]).argmax()
    assert json.loads(result.output)[0]["letter"] == "ABCDEFGHIKLMNOPQRSTUVWXY"[expected]


def test_todays_classifier_is_data(store, data_model, tiny, hand):
    uri = MlflowClient().get_run(data_model).data.tags[CLASSIFIER_URI_TAG]
    folder = Path(mlflow.artifacts.download_artifacts(uri))
    conf = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    assert conf["loader_module"] == "signlab.models.pyfunc" and "python_model" not in conf
    assert not list(folder.rglob("*.pkl")) and sorted(p.name for p in (folder / conf["data"]).iterdir()) == \
        ["model.skops", "signlab.json"]
    result = _predict(str(hand), "--model", "models:/sign-mnist-mlp@champion", "--json", store=store)
    assert result.exit_code == 0, result.output
    letter = "ABCDEFGHIKLMNOPQRSTUVWXY"[tiny.predict_proba(np.asarray(Image.open(hand))[None]).argmax()]
    assert json.loads(result.output)[0]["letter"] == letter


def test_mlmodel_forms_that_could_run_code_are_refused():
    ours = {"loader_module": "signlab.models.pyfunc", "data": "data/letter_model", "code": None}
    assert classifier_problem({"python_function": ours}) is None
    for change, words in (({"code": "code"}, "ships code"), ({"data": "../../etc"}, "not a folder inside"),
                          ({"data": "/etc"}, "not a folder inside"), ({"loader_module": "mlflow.sklearn"}, "its loader"),
                          ({"loader_module": "mlflow.pyfunc.model", "model_code_path": "m.py"}, "models-from-code"),
                          ({"loader_module": "evil", "python_model": "x.pkl"}, "python_model pickle")):
        assert words in classifier_problem({"python_function": {**ours, **change}}), change
    assert classifier_problem({"sklearn": {}}) == "no python_function flavor"


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/signlab-evil-ran",))


def test_pickle_problem_reads_without_running(tmp_path):
    path = tmp_path / "python_model.pkl"
    for payload in (_Evil(), [LetterPyfunc(), _Evil()]):
        path.write_bytes(pickle.dumps(payload))
        assert "not signlab's classifier alone" in pickle_problem(path)
    assert not Path("/tmp/signlab-evil-ran").exists()
    path.write_bytes(pickle.dumps(LetterPyfunc()))
    assert pickle_problem(path) is None


def test_served_errors_are_one_short_line():
    """MLflow's scoring server prefixes the payload's repr to an MlflowException's message;
    ours keeps its own."""
    exc = ShortError("bad input: pixel 3 is 300, outside 0-255")
    exc.message = f"Failed to predict data '{'x' * 10_000}'. \nError: {exc.message}"
    assert json.loads(exc.serialize_as_json())["message"] == "bad input: pixel 3 is 300, outside 0-255"


# ---- streaming and paths ---------------------------------------------------------------------
def _write_csv(path: Path, n: int, header: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame(_images(n).reshape(n, -1).astype(np.int64), columns=PIXEL_COLUMNS)
    frame.insert(0, "label", 0)
    with (gzip.open(path, "wt") if path.suffix == ".gz" else open(path, "w")) as f:
        frame.to_csv(f, index=False, header=header)
    return frame


def test_csv_chunks_stream_plain_and_gz_with_true_line_numbers(tmp_path):
    for name, header in (("rows.csv.gz", True), ("rows.csv", True)):
        frame = _write_csv(tmp_path / name, 12, header)
        chunks = list(predict_module.csv_chunks(tmp_path / name, chunk=5))
        assert [len(n) for n, _ in chunks] == [5, 5, 2]
        assert [n for names, _ in chunks for n in names] == [f"{name}:row{i}" for i in range(2, 14)]
        np.testing.assert_array_equal(np.concatenate([i for _, i in chunks]).reshape(12, -1),
                                      frame[PIXEL_COLUMNS].to_numpy())
    frame = _write_csv(tmp_path / "bad.csv", 12)
    frame.loc[8, "pixel3"] = 300  # file line 10, in the second chunk
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(predict_module.PayloadError, match=r"bad.csv: line 10: pixel 3 is 300, outside 0-255$"):
        list(predict_module.csv_chunks(tmp_path / "bad.csv", chunk=5))


def test_paths_get_their_own_true_message(tmp_path, store, monkeypatch):
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    broken = tmp_path / "broken.png"
    broken.symlink_to(tmp_path / "gone.png")
    for path, words in ((tmp_path, "a directory, not a file"), (loop, "a symlink loop"),
                        (broken, "a broken symlink"), (tmp_path / "missing.png", "no such file")):
        result = _predict(str(path), store=store)
        assert result.exit_code == 2 and f"{path}: {words}" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    unreadable = tmp_path / "hand.png"
    unreadable.write_bytes(b"x")

    def no_permission(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(predict_module, "open", no_permission, raising=False)  # root reads anything
    assert predict_module.input_problem(unreadable) == "not readable (permission denied)"


def test_predict_streams_csv_rows_as_text_and_json(store, data_model, tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(predict_module, "CSV_CHUNK", 4)
    path = tmp_path / "rows.csv.gz"
    frame = _write_csv(path, 10)
    expected = ["ABCDEFGHIKLMNOPQRSTUVWXY"[i] for i in tiny.predict_proba(frame[PIXEL_COLUMNS].to_numpy()).argmax(1)]
    model = ["--model", "models:/sign-mnist-mlp@champion"]
    result = _predict(str(path), *model, "--json", store=store)
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)
    assert [a["input"] for a in answers] == [f"rows.csv.gz:row{i}" for i in range(2, 12)]
    assert [a["letter"] for a in answers] == expected
    text = _predict(str(path), *model, store=store).output.splitlines()
    assert len(text) == 10 and text[0].startswith("rows.csv.gz:row2: ")


# ---- the real thing --------------------------------------------------------------------------
@pytest.mark.slow
def test_a_trained_cnn_is_logged_as_data_and_predicts(store, data_dir, tmp_path, test_split):
    """A real CNN run (tiny subset, one epoch): its Keras file loads in safe mode, promote
    accepts it, and `predict` answers with the letters the model gives."""
    result = CliRunner().invoke(app, ["train", "--preset", "tutorial", "--subset", "5", "--epochs", "1",
                                      "--tracking-uri", store, "--experiment", "safety"])
    assert result.exit_code == 0, result.output
    run_id = result.output.split("run ")[1].split(":")[0]
    result = CliRunner().invoke(app, ["promote", "--run-id", run_id, "--force", "--tracking-uri", store])
    assert result.exit_code == 0 and "is the champion" in result.output, result.output
    image = tmp_path / "hand.png"
    Image.fromarray(test_split.images[0]).save(image)
    result = _predict(str(image), "--json", store=store)  # the new champion: sign-mnist-cnn@champion
    assert result.exit_code == 0, result.output
    uri = MlflowClient().get_run(run_id).data.tags[CLASSIFIER_URI_TAG]
    folder = Path(mlflow.artifacts.download_artifacts(uri))
    assert (folder / "data/letter_model/model.keras").exists() and not list(folder.rglob("*.pkl"))
    model = LetterModel.load(folder / "data/letter_model")
    letter = "ABCDEFGHIKLMNOPQRSTUVWXY"[model.predict_proba(test_split.images[:1]).argmax()]
    assert json.loads(result.output)[0]["letter"] == letter


@pytest.mark.slow
def test_served_classifier_errors_are_one_short_line(store, data_model):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/sign-mnist-mlp@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=subprocess_env(MLFLOW_TRACKING_URI=store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, 120)
        url = f"http://127.0.0.1:{port}/invocations"
        bad = [[300] * 784] + [[0] * 784] * 2000  # a big payload with a bad pixel
        for payload, words in (({"inputs": bad}, "bad input: image 0: pixel 1 is 300, outside 0-255"),
                               ({"dataframe_split": {"columns": PIXEL_COLUMNS[:10], "data": [[1] * 10]}},
                                "bad input: expected columns pixel1..pixel784")):
            request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=60)
            body = caught.value.read()
            assert caught.value.code == 400 and len(body) < 400, body[:500]
            message = json.loads(body)["message"]
            assert message.startswith(words) and "\n" not in message and "Failed to predict" not in message, message
        request = urllib.request.Request(url, json.dumps({"inputs": [[1] * 784]}).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert len(json.loads(response.read())["predictions"]) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)
