"""`python -m ops.cli` runs the CLI (how the CLI starts its own child processes)."""

from ops.cli import main

main()
