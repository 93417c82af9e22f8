"""A machine without Chrome/Chromium (or without network) is a normal case: every chart is
drawn by matplotlib as PNG, and every HTML artifact opens offline (plotly.js inlined, no
<script src=...> from the network). Run under `../shared/tools/without-browser.sh`, which
hides the browser from one command (PATH and the fixed paths where browsers are installed).
A study through `mlflow run`, its trials, refit and parent, and the report: see
tests/test_mlflow_ui.py (`mlflow_run` runs without a browser)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env, without_browser

BIN = Path(sys.executable).parent
PNG = b"\x89PNG\r\n\x1a\n"


def test_no_browser_driver_is_imported():
    """PNG needs no headless browser: kaleido and choreographer are not dependencies any more."""
    code = ("import sys, signlab.cli, signlab.data.profile, signlab.runs.job, signlab.search.outputs, "
            "signlab.serving.report; print(sorted({m.split('.')[0] for m in sys.modules} & {'kaleido', 'choreographer'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_profile_without_a_browser_writes_pngs(tmp_path, data_dir):
    proc = subprocess.run(without_browser([str(BIN / "signlab"), "data", "profile", "--output", "profile"]),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=subprocess_env(SIGNLAB_DATA_DIR=str(data_dir)))
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-4000:]
    assert "PNG" not in proc.stdout + proc.stderr, "no warning: nothing is missing"
    out = tmp_path / "profile"
    for stem in ("class_histogram_train", "class_histogram_test", "samples_train", "samples_test"):
        assert (out / f"{stem}.png").read_bytes()[:8] == PNG, stem
