"""Promotion with aliases and a gate; `signlab predict` on PNGs; `mlflow models serve`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import free_port, mlflow_store, subprocess_env
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from signlab.cli import app
from signlab.data.labels import LABELS, label_to_letter
from signlab.data.splits import normalise
from signlab.serving import gate_score


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return mlflow_store(tmp_path_factory.mktemp('registry'))


def _train(store: str, *args: str) -> tuple[str, dict[str, float]]:
    result = CliRunner().invoke(app, ["train", *args, "--tracking-uri", store, "--experiment", "registry"])
    assert result.exit_code == 0, result.output
    run_id = result.output.split("run ")[1].split(":")[0]
    return run_id, MlflowClient(store).get_run(run_id).data.metrics


@pytest.fixture(scope="module")
def mlp_runs(store, data_dir) -> list[tuple[str, dict[str, float]]]:
    """Three MLP runs of clearly different quality (1, 3 and 12 iterations)."""
    runs = [_train(store, "--family", "mlp", "--preset", "nn2", "--subset", "40", "--epochs", str(n))
            for n in (3, 1, 12)]
    accs = [m["test_accuracy"] for _, m in runs]
    assert accs[1] < accs[0] < accs[2], accs
    return runs


@pytest.fixture(scope="module")
def cnn_champion(store, data_dir) -> str:
    """The tutorial CNN (25 outputs; batch 128, learning rate 0.003) on the whole training file
    for 3 epochs (test accuracy about 0.91), promoted."""
    run_id, metrics = _train(store, "--preset", "tutorial", "--epochs", "3", "--val-fraction", "0",
                             "--set", "batch_size=128", "--set", "learning_rate=0.003")
    assert metrics["test_accuracy"] > 0.85
    result = CliRunner().invoke(app, ["promote", "--run-id", run_id, "--tracking-uri", store])
    assert result.exit_code == 0 and "is the champion" in result.output, result.output
    return run_id


@pytest.fixture(scope="module")
def test_rows(data_dir) -> pd.DataFrame:
    """Two rows per letter of the test file as pandas reads them (int64, with `label`)."""
    return pd.read_csv(data_dir / "sign_mnist_test.csv.gz").groupby("label").head(2).reset_index(drop=True)


def _classifier(store: str, run_id: str) -> mlflow.pyfunc.PyFuncModel:
    mlflow.set_tracking_uri(store)
    return mlflow.pyfunc.load_model(MlflowClient(store).get_run(run_id).data.tags["signlab.classifier_uri"])


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


@pytest.mark.slow
def test_promotion_gate_and_aliases(store, mlp_runs):
    client = MlflowClient(store)
    name = "sign-mnist-mlp"
    (first, m1), (worse, _), (better, m3) = mlp_runs
    runner = CliRunner()

    def promote(run_id: str, *extra: str) -> str:
        result = runner.invoke(app, ["promote", "--run-id", run_id, "--tracking-uri", store, *extra])
        assert result.exit_code == 0, result.output
        return result.output

    assert "is the champion" in promote(first)
    assert _aliases(client, name) == {"champion": "1"}
    version = client.get_model_version(name, "1")
    assert version.tags["source_run"] == first and float(version.tags["test_accuracy"]) == pytest.approx(m1["test_accuracy"])
    assert {"n_params", "test_f1_macro", "final_val_accuracy", "registered_by", "registered_at"} <= set(version.tags)

    out = promote(worse)
    assert "stays challenger" in out and "does not beat champion v1" in out
    # the same test images paired, photos resampled for both: difference, interval and verdict
    paired = next(line for line in out.splitlines() if line.startswith("against champion"))
    assert paired.startswith("against champion v1 on the same ") and " points (" in paired
    assert any(verdict in paired for verdict in ("better", "worse", "no measurable difference"))
    assert _aliases(client, name) == {"champion": "1", "challenger": "2"}

    assert "v1 (test accuracy" in promote(better)
    assert _aliases(client, name) == {"champion": "3", "previous": "1", "challenger": "2"}
    assert client.get_model_version(name, "3").tags["verdict"] == "champion"

    # the same run again changes nothing: no new version, same aliases
    assert "already the champion; nothing changed" in promote(better)
    assert "already the challenger; nothing changed" in promote(worse)
    assert len(client.search_model_versions(f"name = '{name}'")) == 3
    assert _aliases(client, name) == {"champion": "3", "previous": "1", "challenger": "2"}

    # --force makes the worse one champion; --family picks the best run by validation
    assert "(forced)" in promote(worse, "--force")
    assert _aliases(client, name)["champion"] == "2" and _aliases(client, name)["previous"] == "3"
    result = runner.invoke(app, ["promote", "--family", "mlp", "--tracking-uri", store])
    assert result.exit_code == 0 and "v3 is the champion" in result.output, result.output


def _version(number: str, **evidence: str) -> ModelVersion:
    """A model version carrying `evidence` as the tags `promote` writes (strings, as stored)."""
    return ModelVersion("sign-mnist-mlp", number, 0, tags=[ModelVersionTag(k, v) for k, v in evidence.items()])


def test_the_gate_orders_by_test_accuracy_then_macro_f1_then_fewer_parameters():
    """The champion's place goes to a version only if it scores higher: a tie keeps the champion."""
    versions = [
        _version("1", test_accuracy="0.9", test_f1_macro="0.8", n_params="100"),
        _version("2", test_accuracy="0.9", test_f1_macro="0.85", n_params="1000"),
        _version("3", test_accuracy="0.91", test_f1_macro="0.1", n_params="1000000", final_val_accuracy="0.2"),
        _version("4", test_accuracy="0.9", test_f1_macro="0.85", n_params="500", registered_by="someone"),
        _version("5"),  # no evidence (registered by hand): last
    ]
    ranked = sorted(versions, key=gate_score, reverse=True)
    assert [v.version for v in ranked] == ["3", "4", "2", "1", "5"]
    again = _version("6", **{k: v for k, v in versions[0].tags.items()})
    assert not gate_score(again) > gate_score(versions[0]), "a tie does not promote"


def test_promote_refuses_bad_input(store):
    runner = CliRunner()
    for args, words in ((["--run-id", "nope"], "no run 'nope'"), ([], "give --family cnn|mlp or --run-id RUN"),
                        (["--family", "svm"], "--family must be cnn or mlp")):
        result = runner.invoke(app, ["promote", *args, "--tracking-uri", store])
        assert result.exit_code == 2 and words in result.output, result.output


@pytest.mark.slow
def test_classifier_takes_what_users_have(store, cnn_champion, test_rows):
    model = _classifier(store, cnn_champion)
    pixels = test_rows.drop(columns="label")
    rows = pixels.to_numpy()
    forms = {"csv rows": test_rows, "no label": pixels, "floats": pixels.astype(np.float64),
             "shuffled columns": test_rows.sample(frac=1.0, axis=1, random_state=0), "784-pixel rows": rows,
             "28x28": rows.reshape(-1, 28, 28), "28x28x1": rows.reshape(-1, 28, 28, 1),
             "columns 0..783": pd.DataFrame(rows)}
    letters = {name: model.predict(x)["letter"].tolist() for name, x in forms.items()}
    assert all(got == letters["csv rows"] for got in letters.values()), letters
    truth = [label_to_letter(v) for v in test_rows["label"]]
    assert sum(a == b for a, b in zip(letters["csv rows"], truth, strict=False)) >= 0.7 * len(truth)  # test accuracy > 0.85


@pytest.mark.slow
def test_classifier_batches_match_keras_predict(store, cnn_champion, test_split):
    """Up to 1024 images go through the compiled call, not Keras `predict`: the same probabilities."""
    model = _classifier(store, cnn_champion)
    images = test_split.images[:300]
    out = model.predict(images.reshape(300, -1))
    keras_model = mlflow.pyfunc.load_model(f"runs:/{cnn_champion}/model")  # the flavour: Keras `predict`
    raw = np.asarray(keras_model.predict(normalise(images)[..., None]))[:, list(LABELS)]
    expected = raw / raw.sum(axis=1, keepdims=True)
    got = out[[f"prob_{label_to_letter(v)}" for v in LABELS]].to_numpy()
    assert got.shape == expected.shape == (300, 24)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_classifier_refuses_unknown_names_and_bad_shapes(store, cnn_champion, test_rows):
    model = _classifier(store, cnn_champion)
    with pytest.raises(MlflowException, match=r"missing 1 \(pixel300\); unknown 1 \(pixel_300\)$"):
        model.predict(test_rows.rename(columns={"pixel300": "pixel_300"}))
    with pytest.raises(MlflowException, match=r"got an array of shape \(2, 27, 28\)$"):
        model.predict(np.zeros((2, 27, 28)))


def _test_pngs(folder: Path, test_split) -> tuple[list[Path], list[str]]:
    """One real test image per letter, written as PNG (28x28, and one enlarged to 112x112)."""
    paths, truth = [], []
    for label in LABELS:
        i = int(np.flatnonzero(test_split.labels == label)[0])
        img = Image.fromarray(test_split.images[i])
        path = folder / f"{label_to_letter(label)}.png"
        (img.resize((112, 112), Image.Resampling.NEAREST) if label == 0 else img).save(path)
        paths.append(path)
        truth.append(label_to_letter(label))
    return paths, truth


@pytest.mark.slow
def test_predict_pngs_with_the_champion(store, cnn_champion, test_split, tmp_path):
    paths, truth = _test_pngs(tmp_path, test_split)
    result = CliRunner().invoke(app, ["predict", *map(str, paths), "--json", "--tracking-uri", store])
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)
    letters = [a["letter"] for a in answers]
    assert all(len(a["top"]) == 3 and a["top"][0]["letter"] == a["letter"] for a in answers)
    correct = sum(a == b for a, b in zip(letters, truth, strict=False))
    assert correct >= 18, list(zip(truth, letters, strict=False))  # the champion's test accuracy is ~0.9
    text = CliRunner().invoke(app, ["predict", str(paths[1]), "--tracking-uri", store]).output
    assert text.startswith(f"{paths[1]}: ") and "top 3:" in text


@pytest.mark.slow
def test_predict_bad_inputs(store, cnn_champion, tmp_path):
    runner = CliRunner()
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    bad_csv = tmp_path / "rows.csv"
    bad_csv.write_text("pixel1,pixel2\n1,2\n")
    for args, words in (([str(fake)], "fake.png: not a readable image"),
                        ([str(bad_csv)], "rows.csv: expected columns pixel1..pixel784 (any order, optional label): missing 782 (pixel3,"),  # noqa: E501 (the whole message)
                        ([str(tmp_path / "missing.png")], "missing.png: no such file"),
                        ([str(fake), "--model", "models:/no-such-model@champion"], "fake.png: not a readable image")):
        result = runner.invoke(app, ["predict", *args, "--tracking-uri", store])
        assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output, result.output


@pytest.mark.slow
def test_predict_csv_by_name_or_position(store, cnn_champion, test_rows, tmp_path):
    named, headerless, renamed = tmp_path / "named.csv", tmp_path / "headerless.csv", tmp_path / "renamed.csv"
    test_rows[:3].sample(frac=1.0, axis=1, random_state=1).to_csv(named, index=False)
    test_rows[:3].drop(columns="label").to_csv(headerless, index=False, header=False)
    test_rows[:3].rename(columns={"pixel300": "pixel_300"}).to_csv(renamed, index=False)
    runner = CliRunner()
    answers = {}
    for path in (named, headerless):
        result = runner.invoke(app, ["predict", str(path), "--json", "--tracking-uri", store])
        assert result.exit_code == 0, result.output
        answers[path.stem] = [(a["input"].split(":")[1], a["letter"]) for a in json.loads(result.output)]
    assert [row for row, _ in answers["named"]] == ["row2", "row3", "row4"]  # file lines
    assert [row for row, _ in answers["headerless"]] == ["row1", "row2", "row3"]
    assert [letter for _, letter in answers["named"]] == [letter for _, letter in answers["headerless"]]
    result = runner.invoke(app, ["predict", str(renamed), "--tracking-uri", store])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "renamed.csv: " in result.output and "missing 1 (pixel300); unknown 1 (pixel_300)" in result.output


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_mlflow_models_serve_the_champion(store, cnn_champion, test_split, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/sign-mnist-cnn@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=subprocess_env(MLFLOW_TRACKING_URI=store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(1)
        url = f"http://127.0.0.1:{port}/invocations"
        idx = [int(np.flatnonzero(test_split.labels == label)[0]) for label in LABELS]
        pixels = test_split.images[idx].reshape(len(idx), -1).tolist()
        columns = [f"pixel{i}" for i in range(1, 785)]
        status, body = _post(url, {"dataframe_split": {"columns": columns, "data": pixels}})
        assert status == 200, body
        letters = [p["letter"] for p in body["predictions"]]
        truth = [label_to_letter(test_split.labels[i]) for i in idx]
        assert sum(a == b for a, b in zip(letters, truth, strict=False)) >= 18
        assert all(0.0 <= p["probability"] <= 1.0 and "prob_A" in p for p in body["predictions"])
        # int rows by position, as nested 28x28 lists: the same letters
        status, body = _post(url, {"inputs": test_split.images[idx].tolist()})
        assert status == 200 and [p["letter"] for p in body["predictions"]] == letters, body
        # bad payloads: one short line, no stack trace, no echo of the payload (MLflow would put
        # the data's repr before "Error: "; the classifier's ShortError keeps its own message)
        status, body = _post(url, {"dataframe_split": {"columns": columns[:10], "data": [pixels[0][:10]]}})
        assert status == 400 and "missing 774 (pixel11, pixel12, pixel13, pixel14, pixel15, ...)" in body["message"], body
        ours = body["message"]
        assert ours.startswith("bad input: ") and "\n" not in ours and len(ours) <= 200, ours
        renamed = [c if c != "pixel300" else "pixel_300" for c in columns]
        status, body = _post(url, {"dataframe_split": {"columns": renamed, "data": pixels}})
        assert status == 400 and "missing 1 (pixel300); unknown 1 (pixel_300)" in body["message"], body
        status, body = _post(url, {"dataframe_split": {"columns": columns, "data": [[300] * 784]}})
        assert status == 400 and "outside 0-255" in body["message"] and "Traceback" not in body["message"], body
    finally:
        server.terminate()
        server.wait(timeout=30)
