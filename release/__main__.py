"""`python -m release` runs the command-line interface."""

from release.cli import main

main()
