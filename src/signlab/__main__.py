"""`python -m signlab`: the same command as `signlab`."""

from signlab.cli import main

main()
