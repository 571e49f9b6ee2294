"""The root of the `citizen-context` command; the commands themselves live in the modules beside it."""

import sys
from typing import NoReturn

import click

from ops.logging import configure_logging
from ops.processes import ServiceError


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="Log level of this process.")
def main(log_level: str) -> None:
    """Citizen Context: each citizen's recent interactions, live, for the agent handling their enquiry."""
    configure_logging(log_level.upper())


def fail(error: ServiceError) -> NoReturn:
    click.secho(f"error: {error}", fg="red", err=True)
    sys.exit(1)
