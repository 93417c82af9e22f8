"""MLproject entry points pass every parameter as `--name value`; this turns MLflow's
conventions (true/false, 0 = default, '' = unset) into the `signlab` CLI's options."""

from __future__ import annotations

import sys

from signlab.cli import app

FLAGS = {"--augment", "--adaptive-lr", "--force"}  # boolean options: value true/false
UNSET_IF_ZERO = {"--epochs", "--n-trials", "--timeout", "--max-epochs", "--max-total-trials", "--parallel"}


def translate(argv: list[str]) -> list[str]:
    """['--augment', 'true', '--epochs', '0'] -> ['--augment']."""
    out: list[str] = []
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
        elif value is not None and (value == "" or (arg in UNSET_IF_ZERO and value.strip() in {"0", "0.0"})):
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
