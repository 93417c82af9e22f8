"""Best runs against the reference models: a thin wrapper over `signlab report`.

    python scripts/report.py [--experiment NAME] [--study NAME] [--family cnn|mlp] [--top N] [--output DIR]
"""

import sys

from signlab.cli import app

if __name__ == "__main__":
    app(["report", *sys.argv[1:]], prog_name="scripts/report.py")
