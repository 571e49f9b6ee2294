"""The root of the `citizen-context` command; the commands themselves live in the modules beside it."""

import math
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ops.logging import configure_logging
from ops.processes import ServiceError

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_settings import BaseSettings, SettingsError

    from models.database import DatabaseSettings


class _Group(click.Group):
    """Settings that fail validation, and servers that cannot be reached, end the command with a message
    saying so, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from pydantic import ValidationError
        from pydantic_settings import SettingsError

        try:
            return super().invoke(ctx)
        except (ValidationError, SettingsError) as error:
            click.secho(f"error: {settings_problem(error)}", fg="red", err=True)
            sys.exit(2)
        except Exception as error:
            message = unavailable_server(error)
            if message is None:
                raise
            fail(ServiceError(message))


class FiniteRange(click.FloatRange):
    """A number within bounds, and a number at all: `nan` passes every comparison of click's FloatRange, and
    would fail a sleep or a count far into the command (give each option a `max` as well: 1e308 is finite)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def counted(count: int, noun: str) -> str:
    """`count` and its noun, plural but for one: "1 record", "0 records", "2 changes"."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def unavailable_server(error: BaseException) -> str | None:
    """What a failure to reach Redis, Kafka or the database says, naming the setting that points at it;
    None for any other error. Only clients already imported are looked at: a command that never used one
    cannot have failed on it, and importing each here would slow every command's start."""
    redis_errors = sys.modules.get("redis.exceptions")
    if redis_errors is not None and isinstance(
        error,
        redis_errors.ConnectionError
        | redis_errors.TimeoutError
        | redis_errors.BusyLoadingError
        | redis_errors.ReadOnlyError
        | redis_errors.OutOfMemoryError,
    ):
        return f"Redis is unavailable (CITIZEN_CONTEXT_REDIS_URL): {error}"
    kafka_errors = sys.modules.get("kafka.errors")
    if kafka_errors is not None and isinstance(error, kafka_errors.KafkaError):
        return f"Kafka failed (CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS): {type(error).__name__}: {error}"
    sql_errors = sys.modules.get("sqlalchemy.exc")
    if sql_errors is not None and (
        isinstance(error, sql_errors.TimeoutError)
        or (isinstance(error, sql_errors.OperationalError) and _database_unreachable(error))
    ):
        # The driver's own words, without SQLAlchemy's statement and link (the URL's password is in neither).
        cause = getattr(error, "orig", None) or error
        return f"the database is unavailable (CITIZEN_CONTEXT_DATABASE_URL): {str(cause).strip()}"
    database = sys.modules.get("models.database")
    if database is not None and isinstance(error, database.DatabaseLocationError):
        return f"{error} (CITIZEN_CONTEXT_DATABASE_URL)"
    return None


# What SQLite says when its file cannot be opened or another process holds it: the database's absence, not
# an error in what was asked of it (a table missing, a statement wrong), which keeps its traceback.
_SQLITE_UNAVAILABLE = ("unable to open database file", "database is locked", "disk I/O error")


def _database_unreachable(error: Any) -> bool:
    """Whether an OperationalError means the database could not be reached or used at all."""
    if getattr(error, "connection_invalidated", False):
        return True
    cause = getattr(error, "orig", None)
    state = getattr(cause, "sqlstate", None)
    if type(cause).__module__.startswith("psycopg"):
        # No SQLSTATE: the server never answered (refused, unknown host, timed out). Class 08 is a
        # connection exception; 57P01 to 57P03, a server shutting down or not accepting connections yet.
        return state is None or state.startswith("08") or state in {"57P01", "57P02", "57P03"}
    return any(words in str(cause) for words in _SQLITE_UNAVAILABLE)


def require_kafka(bootstrap: list[str]) -> None:
    """Fail at once, saying so, unless a bootstrap server accepts connections: kafka-python's clients
    would first wait out their whole bootstrap timeout (30 s), then raise."""
    from events.topics import reachable

    if not any(reachable(server) for server in bootstrap):
        servers = ", ".join(bootstrap)
        fail(
            ServiceError(
                f"Kafka cannot be reached at {servers} (CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS): "
                "no bootstrap server accepted a connection"
            )
        )


def settings_problem(error: "ValidationError | SettingsError") -> str:
    """What is wrong with settings that did not load, each variable named (never its value)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return f"invalid {error.title}: " + "; ".join(_named(error.title, item) for item in error.errors())
    # A setting that must be JSON (a list, a mapping) and is not: its message names the setting.
    return f"invalid settings: {error}"


def settings_problems(settings_class: "type[BaseSettings]") -> list[str]:
    """What is wrong with a settings class as this environment loads it (none: it loads)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        settings_class()
    except (ValidationError, SettingsError) as error:
        return [settings_problem(error)]
    return []


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


def warn_of_misspelt_variables() -> None:
    """Said as a long-running command starts: a variable that looks like a setting but is none is ignored,
    its setting left at its default (`citizen-context settings` refuses it outright)."""
    import structlog

    from ops.settings_doc import misspelt_variables

    for name in misspelt_variables():
        structlog.get_logger("settings").warning("no such setting (misspelt?): ignored", variable=name)


def fail(error: ServiceError) -> NoReturn:
    click.secho(f"error: {error}", fg="red", err=True)
    sys.exit(1)


def database_settings() -> "DatabaseSettings":
    """The SQL database's settings. Outside development, only a database named explicitly: the default, a
    SQLite file under the working folder, would be lost with a container, and with it the enquiries, the
    audit trail and the API keys."""
    from pydantic_settings import SettingsError

    from events.signing import Deployment
    from models.database import DatabaseSettings

    settings = DatabaseSettings()
    # The environment alone, not every security setting: `citizen-context settings` names this problem
    # beside theirs, whatever else is wrong with them.
    if "url" not in settings.model_fields_set and Deployment().environment != "development":
        # A setting missing: said (status 2) as settings that do not load are, by the group (_Group.invoke).
        raise SettingsError(
            "set CITIZEN_CONTEXT_DATABASE_URL outside development (PostgreSQL, or a SQLite file on a lasting "
            "volume): the default SQLite file under the working folder would be lost with a container, and "
            "the enquiries, the audit trail and the API keys with it"
        )
    return settings
