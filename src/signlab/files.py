"""Files written for the user (report, profile, plots) appear whole or not at all: each is
written to a temp file beside it and renamed into place; a failure leaves the previous
file as it was, removes the temp file and is a one-line UserError."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from signlab.errors import UserError


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temp path beside `target` (same suffix, so writers that go by it still work) to
    write to; on leaving the block it replaces `target`, or is removed if the block raised."""
    target = Path(target)
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(target))
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())  # on disk before the rename, or a crash could leave it empty
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(target, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fill(tmp: Path, target: Path, text: str) -> None:
    """Write `text` to `atomic_path(target)`'s temp path; a failure names `target` (with
    several atomic paths open at once, the innermost block would otherwise name its own)."""
    try:
        tmp.write_text(text)
    except OSError as exc:
        raise _cannot_write(target, exc) from None


def write_text(target: Path, text: str) -> Path:
    """Write `text` to `target` atomically; `target`."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return target


def output_folder(folder: Path) -> Path:
    """Make the folder files are written into, or a UserError naming it and what is wrong."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output folder {folder} is a file; expected a folder (existing, or one that can be made)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot make the output folder {folder}: {exc.strerror or exc}; "
                        "expected a folder that can be written to") from None
    return folder


def _mode_for(target: Path) -> int:
    """The mode the file would have had if written in place: the old file's, else 0666 less the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _cannot_write(target: Path, exc: OSError) -> UserError:
    kept = f"the previous {target.name} is unchanged" if target.exists() else f"no {target.name} was written"
    return UserError(f"cannot write {target}: {exc.strerror or exc} ({kept})")
