"""MLproject entry points pass every parameter as `--name value`; this turns MLflow's
conventions (true/false, and words that mean "unset": the MLproject's defaults `file`,
`default`, `preset`, `none`, `all`) into the `signlab` CLI's options.

The defaults are words, not '', because `mlflow run` logs every entry-point parameter as given
and the MLflow UI shows an empty one as `''`. The older spellings ('' and 0) still mean unset."""

from __future__ import annotations

import sys

from signlab.cli import app

FLAGS = {"--augment", "--adaptive-lr", "--force"}  # boolean options: value true/false
UNSET_WORDS = {"", "file", "default"}  # any option: the study file's value / signlab's default
# Words that mean unset for one option only (elsewhere they may be values: `reference all`).
UNSET_FOR = {
    "--epochs": {"0", "0.0", "preset"},
    "--n-trials": {"0", "0.0"},
    "--timeout": {"0", "0.0"},
    "--max-epochs": {"0", "0.0"},
    "--max-total-trials": {"0", "0.0", "none"},
    "--parallel": {"0", "0.0"},
    "--study": {"all"},
    "--family": {"all"},
}


def _unset(option: str, value: str, command: str) -> bool:
    """Whether `option value` means "not given" (so the CLI's own default applies)."""
    value = value.strip()
    if value in UNSET_WORDS:
        return True
    if option == "--family" and command != "report":  # train's --family all is a mistake to report
        return False
    return value in UNSET_FOR.get(option, set())


def translate(argv: list[str]) -> list[str]:
    """['--augment', 'true', '--epochs', '0'] -> ['--augment']."""
    out: list[str] = []
    command = argv[0] if argv else ""
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) and arg.startswith("--") else None
        if arg in FLAGS and value is not None:
            truth = value.strip().lower()
            if truth not in {"true", "false", "1", "0", "yes", "no"}:
                raise SystemExit(f"error: {arg} must be true or false, got {value!r}")
            out.append(arg if truth in {"true", "1", "yes"} else "--no-" + arg[2:])
            i += 2
        elif value is not None and _unset(arg, value, command):
            i += 2
        else:
            out.append(arg)
            i += 1
    return out


def main() -> None:
    """Run the CLI with translated arguments."""
    app(translate(sys.argv[1:]), prog_name="signlab")


if __name__ == "__main__":
    main()
