"""`signlab data fetch --url` against a real HTTP server on 127.0.0.1 (a thread of this
process); the tests that serve the real files are marked slow."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from signlab.cli import app
from signlab.data.fetch import FetchError, fetch


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path.startswith("/cut/"):  # claims more bytes than it sends
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"label,pixel1\r\n" * 100)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture()
def serve(tmp_path) -> Iterator[callable]:
    """serve(folder) -> base URL of an HTTP server on 127.0.0.1 serving that folder."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_Handler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/files"

    _Handler.requests = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def originals(tmp_path, data_dir) -> Path:
    """A folder holding train as .csv.gz and test as plain .csv (both originals)."""
    folder = tmp_path / "www" / "files"
    folder.mkdir(parents=True)
    shutil.copy(data_dir / "sign_mnist_train.csv.gz", folder)
    with gzip.open(data_dir / "sign_mnist_test.csv.gz", "rb") as src, open(folder / "sign_mnist_test.csv", "wb") as dst:
        shutil.copyfileobj(src, dst)
    return folder


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_fetch_verifies_and_writes_both_files(serve, originals, tmp_path):
    base = serve(originals.parent)
    target = tmp_path / "data"
    paths = fetch(target, url=base, progress=False)
    assert paths == {"train": target / "sign_mnist_train.csv.gz", "test": target / "sign_mnist_test.csv"}
    assert _leftovers(target) == ["sign_mnist_test.csv", "sign_mnist_train.csv.gz"]
    assert (target / "sign_mnist_test.csv").read_bytes() == (originals / "sign_mnist_test.csv").read_bytes()
    # a second fetch finds verified files and downloads nothing
    _Handler.requests = []
    assert fetch(target, url=base, progress=False) == paths
    assert _Handler.requests == []


@pytest.mark.slow
def test_corrupted_download_leaves_nothing(serve, originals, tmp_path):
    blob = bytearray((originals / "sign_mnist_test.csv").read_bytes())
    blob[5000] = ord("7") if blob[5000] != ord("7") else ord("8")
    (originals / "sign_mnist_test.csv").write_bytes(bytes(blob))
    target = tmp_path / "data"
    with pytest.raises(FetchError) as info:
        fetch(target, url=serve(originals.parent), progress=False)
    message = str(info.value)
    assert "sign_mnist_test.csv" in message and "SHA-256" in message and "nothing written" in message
    assert "sign_mnist_test.csv" not in _leftovers(target)
    assert not [n for n in _leftovers(target) if n.endswith(".part")]


def test_404_says_what_was_tried(serve, tmp_path):
    empty = tmp_path / "www" / "files"
    empty.mkdir(parents=True)
    target = tmp_path / "data"
    with pytest.raises(FetchError) as info:
        fetch(target, url=serve(empty.parent), progress=False)
    message = str(info.value)
    assert "sign_mnist_train.csv not found" in message
    assert "sign_mnist_train.csv (404)" in message and "sign_mnist_train.csv.gz (404)" in message
    assert _leftovers(target) == []


def test_interrupted_download_leaves_nothing(serve, tmp_path):
    folder = tmp_path / "www" / "files"
    folder.mkdir(parents=True)
    target = tmp_path / "data"
    with pytest.raises(FetchError, match="got 1400 of 1000000 bytes; nothing written"):
        fetch(target, url=serve(folder.parent).replace("/files", "/cut"), progress=False)
    assert _leftovers(target) == []
    assert _Handler.requests == ["/cut/sign_mnist_train.csv"]


@pytest.mark.slow
def test_fetch_command(serve, originals, tmp_path):
    runner = CliRunner()
    target = tmp_path / "data"
    ok = runner.invoke(app, ["data", "fetch", "--data-dir", str(target), "--url", serve(originals.parent)])
    assert ok.exit_code == 0, ok.output
    assert "train: " in ok.output and "SHA-256 verified" in ok.output
    bad = runner.invoke(app, ["data", "fetch", "--data-dir", str(tmp_path / "other"), "--url", "http://127.0.0.1:9/none"])
    assert bad.exit_code == 2
    assert "cannot connect" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_failed_fetch_removes_only_the_folders_it_created(serve, originals, tmp_path, monkeypatch):
    dead = "http://127.0.0.1:9/none"  # nothing listens on port 9
    with pytest.raises(FetchError, match="cannot connect"):
        fetch(tmp_path / "new" / "deeper", url=dead, progress=False)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(FetchError):
        fetch(mine, url=dead, progress=False)
    assert mine.is_dir(), "a folder the user made stays"
    # the first file verified, the second missing: the folder keeps the verified file
    (originals / "sign_mnist_test.csv").unlink()
    with pytest.raises(FetchError, match="sign_mnist_test.csv not found"):
        fetch(tmp_path / "half", url=serve(originals.parent), progress=False)
    assert _leftovers(tmp_path / "half") == ["sign_mnist_train.csv.gz"]
    # the command with the default ./data, as in the quick start
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIGNLAB_DATA_DIR")
    result = CliRunner().invoke(app, ["data", "fetch", "--url", dead])
    assert result.exit_code == 2 and "cannot connect" in result.output
    assert not (tmp_path / "data").exists()
