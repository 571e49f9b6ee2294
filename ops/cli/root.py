"""The root of the `citizen-context` command; the commands themselves live in the modules beside it."""

import sys
from typing import Any, NoReturn

import click

from ops.logging import configure_logging
from ops.processes import ServiceError


class _Group(click.Group):
    """Settings that fail validation end the command with their message, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from pydantic import ValidationError
        from pydantic_settings import SettingsError

        try:
            return super().invoke(ctx)
        except ValidationError as error:
            problems = "; ".join(_named(error.title, item) for item in error.errors())
            click.secho(f"error: invalid {error.title}: {problems}", fg="red", err=True)
            sys.exit(2)
        except SettingsError as error:
            # A setting that must be JSON (a list, a mapping) and is not: its message names the setting.
            click.secho(f"error: invalid settings: {error}", fg="red", err=True)
            sys.exit(2)


def _named(model: str, item: Any) -> str:
    """A settings error, with the environment variable it came from when the model is one of the project's
    settings (a field is read from its class's `env_prefix` and its name, upper-case)."""
    from ops.settings_doc import ALL_SETTINGS

    settings = next((cls for cls in ALL_SETTINGS if cls.__name__ == model), None)
    if settings is None or not item["loc"]:
        return str(item["msg"])
    variable = f"{settings.model_config.get('env_prefix', '')}{item['loc'][0]}".upper()
    return f"{variable}: {item['msg']}"


@click.group(cls=_Group)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    help="Log level of this process.",
)
def main(log_level: str) -> None:
    """Citizen Context: each citizen's recent interactions, live, for the agent handling their enquiry."""
    configure_logging(log_level.upper())


def fail(error: ServiceError) -> NoReturn:
    click.secho(f"error: {error}", fg="red", err=True)
    sys.exit(1)
