"""`citizen-context`: the one command that starts every process and tool."""

from ops.cli import bench, processes, projection, services  # noqa: F401  (each registers its commands)
from ops.cli.root import main

__all__ = ["main"]
