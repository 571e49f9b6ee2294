"""`citizen-context`: the one command that starts every process and tool."""

from ops.cli import (  # noqa: F401  (each registers its commands)
    bench,
    processes,
    projection,
    security,
    services,
    simulate,
)
from ops.cli.root import main

__all__ = ["main"]
