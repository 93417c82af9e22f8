"""The `signlab` command: one Typer app; each feature adds its commands here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from signlab.errors import friendly

app = typer.Typer(help="MLflow-tracked hyperparameter studies for Sign Language MNIST.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
data_app = typer.Typer(help="Get, check and profile the data set.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DataDir = Annotated[
    str | None,
    typer.Option("--data-dir", help="Folder with the CSVs (default: $SIGNLAB_DATA_DIR, else ./data)."),
]


@data_app.command("fetch")
@friendly
def data_fetch(
    data_dir: DataDir = None,
    url: Annotated[str | None, typer.Option(help="Base URL serving sign_mnist_{train,test}.csv[.gz] (default: Kaggle via kagglehub).")] = None,
    force: Annotated[bool, typer.Option(help="Download even if verified files are present.")] = False,
) -> None:
    """Download both CSVs into the data dir, verifying their SHA-256."""
    from signlab import config
    from signlab.fetch import fetch

    paths = fetch(data_dir or None, url=url, force=force)
    for split, path in sorted(paths.items()):
        typer.echo(f"{split}: {path} (SHA-256 verified)")
    typer.echo(f"data dir: {config.data_dir(data_dir or None).resolve()}")


@data_app.command("profile")
@friendly
def data_profile(
    data_dir: DataDir = None,
    output: Annotated[Path, typer.Option(help="Folder for the HTML/PNG files.")] = Path("profile"),
    per_letter: Annotated[int, typer.Option(min=1, max=32, help="Sample images per letter.")] = 8,
) -> None:
    """Class histograms and sample images of both splits; logged to MLflow inside a run."""
    from signlab.data import load_split
    from signlab.profile import class_counts, write_profile
    from signlab.tracking import log_to_active_run

    train = load_split("train", data_dir or None)
    test = load_split("test", data_dir or None)
    written = write_profile(train, test, output, per_letter)
    for split in (train, test):
        counts = class_counts(split)
        typer.echo(
            f"{split.name}: {len(split)} images from {split.path}"
            f" ({'verified' if split.verified else 'MODIFIED'}), "
            f"{min(counts.values())}-{max(counts.values())} per class"
        )
    typer.echo(f"wrote {len(written)} files to {output}")
    run_id = log_to_active_run(written, artifact_path="profile")
    if run_id:
        typer.echo(f"logged to MLflow run {run_id}")


def main() -> None:
    """Entry point for `python -m signlab`."""
    app()
