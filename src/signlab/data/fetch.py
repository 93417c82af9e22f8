"""`signlab data fetch`: download the CSVs (Kaggle via kagglehub, or any base URL), verified.

A download goes to a temporary file beside its target and is renamed only after its
SHA-256 matches an original; a failed, corrupted or interrupted download leaves nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from signlab import config
from signlab.data.dataset import DataFileNotFound, find_split_file, is_verified
from signlab.errors import UserError


class FetchError(UserError, RuntimeError):
    """A download that failed or did not verify; nothing was written."""


def present(data_dir: Path) -> dict[str, Path]:
    """Splits already in `data_dir` with verified content, by split name."""
    found = {}
    for split in config.SPLIT_FILES:
        try:
            path = find_split_file(split, data_dir)  # type: ignore[arg-type]
        except DataFileNotFound:
            continue
        if is_verified(path):
            found[split] = path
    return found


def fetch(
    data_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Put verified copies of both splits in the data dir; returns their paths by split.
    A failure removes the folders this call created, if they are still empty."""
    target = config.data_dir(data_dir)
    created = [folder for folder in (target, *target.parents) if not folder.exists()]  # innermost first
    target.mkdir(parents=True, exist_ok=True)
    try:
        have = {} if force else present(target)
        missing = [s for s in config.SPLIT_FILES if s not in have]
        if not missing:
            return have
        if url:
            for split in missing:
                have[split] = _fetch_url(url, config.SPLIT_FILES[split], target, progress)
        else:
            source = _kaggle_download()
            for split in missing:
                have[split] = _copy_verified(source, config.SPLIT_FILES[split], target)
        return have
    except BaseException:
        for folder in created:  # a folder holding a verified file stays, and so do its parents
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _fetch_url(base: str, name: str, target: Path, progress: bool) -> Path:
    """Download `name` (or `name`.gz) from `base` into `target`, verified."""
    tried = []
    for filename in (name, f"{name}.gz"):
        address = f"{base.rstrip('/')}/{filename}"
        try:
            return _download(address, target / filename, progress)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise FetchError(f"{address}: HTTP {exc.code} {exc.reason}; nothing written") from None
            tried.append(f"{address} (404)")
        except urllib.error.URLError as exc:
            raise FetchError(f"{address}: cannot connect ({exc.reason}); nothing written") from None
    raise FetchError(f"{name} not found at {base}: tried {', '.join(tried)}; nothing written")


def _download(address: str, dest: Path, progress: bool) -> Path:
    """Stream `address` into a temporary file; rename it to `dest` once its SHA-256 verifies."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(address, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            try:
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
                ) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
            except (http.client.HTTPException, OSError) as exc:
                raise FetchError(f"{address}: download broke off ({exc!r}); nothing written") from None
            if total is not None and out.tell() != total:
                raise FetchError(f"{address}: got {out.tell()} of {total} bytes; nothing written")
        if not is_verified(tmp, dest.name, sha=digest.hexdigest()):
            raise FetchError(
                f"{address}: SHA-256 {digest.hexdigest()} matches no original {dest.name}: "
                "the download is corrupted or not the Kaggle file; nothing written"
            )
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def _kaggle_download() -> Path:
    """Download the Kaggle data set with kagglehub; the folder holding its files."""
    try:
        import kagglehub

        return Path(kagglehub.dataset_download(config.KAGGLE_DATASET))
    except Exception as exc:  # kagglehub raises many kinds: credentials, network, HTTP
        raise FetchError(
            f"Kaggle download of {config.KAGGLE_DATASET} failed ({type(exc).__name__}: {exc}). "
            "Set up Kaggle credentials (KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json), "
            "or give --url with a base URL serving sign_mnist_train.csv and sign_mnist_test.csv."
        ) from None


def _copy_verified(source: Path, name: str, target: Path) -> Path:
    """Copy `name` (or `name`.gz) from a downloaded folder into `target`, verified."""
    for candidate in sorted(source.rglob(f"{name}*")):
        if candidate.name not in (name, f"{name}.gz"):
            continue
        dest = target / candidate.name
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            shutil.copyfile(candidate, tmp)
            if not is_verified(tmp, dest.name):
                raise FetchError(f"{candidate}: SHA-256 matches no original {name}; nothing written")
            os.replace(tmp, dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)
    raise FetchError(f"{name} is not in the Kaggle download at {source}; nothing written")
