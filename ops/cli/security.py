"""`citizen-context token` (development sign-in) and `citizen-context keys` (integrators' API keys)."""

import getpass
import os
import re
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from models.api_key_limits import CLIENT_PATTERN, MAX_GRACE_DAYS, MAX_KEY_DAYS
from ops.cli.root import database_settings, main

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Engine

    from api.security.api_keys import IssuedKey
    from api.security.audit import Actor
    from models.tables import ApiKey

_DURATION = re.compile(r"^(\d{1,9})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# A development token lives at most this long (a production token comes from the identity provider).
MAX_TOKEN_TTL = timedelta(days=30)


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `8h`, `90d` -> a timedelta."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise click.BadParameter(
            f"{text!r}: expected a number (at most 9 digits) and a unit, e.g. 90s, 15m, 8h, 90d"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Duration(click.ParamType[timedelta, object]):
    """A duration option (`15m`, `8h`, `90d`) between two bounds, refused with a usage error otherwise."""

    name = "duration"

    def __init__(self, *, least: timedelta, most: timedelta) -> None:
        self._least, self._most = least, most

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        duration = parse_duration(str(value))
        if not self._least <= duration <= self._most:
            self.fail(f"{value!r}: must be from {_spoken(self._least)} to {_spoken(self._most)}", param, ctx)
        return duration


def _spoken(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _agent_id(value: str) -> str:
    from api.security.tokens import checked_agent_id

    try:
        return checked_agent_id(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _client_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not re.fullmatch(CLIENT_PATTERN, value):
        raise click.BadParameter(
            f"{value!r}: 1 to 100 letters, digits, dots, dashes or underscores, the first a letter or digit"
        )
    return value


@main.command()
@click.option(
    "--agent",
    "agent_id",
    default="dev-agent",
    show_default=True,
    callback=lambda _ctx, _param, value: _agent_id(value),
    help="The agent id (`sub`).",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["agent", "supervisor", "admin"]),
    default=("agent",),
    show_default=True,
    help="A role to grant (repeat for several).",
)
@click.option("--name", default="", help="The agent's display name.")
@click.option(
    "--ttl",
    default="8h",
    show_default=True,
    type=Duration(least=timedelta(seconds=1), most=MAX_TOKEN_TTL),
    help="How long the token is valid (e.g. 15m, 8h; at most 30d).",
)
def token(agent_id: str, roles: tuple[str, ...], name: str, ttl: timedelta) -> None:
    """Print a development token for an agent; refuses to run outside development settings."""
    from api.security.settings import SecuritySettings
    from api.security.tokens import DevelopmentOnly, mint_development_token
    from models.tables import AgentRole

    try:
        minted = mint_development_token(
            SecuritySettings(),
            agent_id=agent_id,
            roles=[AgentRole(role) for role in roles],
            name=name,
            ttl=ttl,
        )
    except DevelopmentOnly as error:
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(1)
    click.echo(minted)


@main.group()
def keys() -> None:
    """Integrators' API keys: create, list, rotate, revoke."""


def _engine() -> "Engine":
    from models.database import create_db_engine, migrate

    settings = database_settings()
    migrate(settings)
    return create_db_engine(settings)


def _operator() -> "Actor":
    """Who runs this command, as the audit trail names them: the account of the server's shell."""
    from api.security.audit import Actor

    try:
        account = getpass.getuser()
    except (OSError, KeyError):  # no name for this user id (a container's arbitrary user)
        account = f"uid {os.getuid()}"
    return Actor(kind="operator", id=account, role="operator")


def _report(issue: "Callable[[Engine], IssuedKey]") -> None:
    """Run a key operation that issues a key, and print the key once, with how to use it."""
    from api.security.api_keys import KeyProblem

    engine = _engine()
    try:
        issued = issue(engine)
    except KeyProblem as error:
        click.secho(f"error: {error.detail}", fg="red", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    record = issued.record
    click.echo(f"id:      {record.id}\nclient:  {record.client}\nscopes:  {record.scopes}")
    click.echo(f"expires: {_utc_text(record.expires_at)}")
    click.echo(f"key:     {issued.key}")
    click.secho("Shown once: only its hash is stored. Send it as the X-API-Key header.", err=True)


@keys.command("create")
@click.option("--client", required=True, callback=_client_name, help="Who the key is for (e.g. crm-plugin).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["events:write", "context:read", "citizens:export", "citizens:erase", "audit:read"]),
    help="A scope to grant (repeat for several).",
)
@click.option(
    "--expires-in",
    default="90d",
    show_default=True,
    type=Duration(least=timedelta(days=1), most=timedelta(days=MAX_KEY_DAYS)),
    help="Lifetime (e.g. 30d; from 1d to 730d, as the API allows).",
)
def keys_create(client: str, scopes: tuple[str, ...], expires_in: timedelta) -> None:
    """Create a key and print it once; only its hash is stored."""
    from api.security import api_keys
    from models.security import Scope

    _report(
        lambda engine: api_keys.create_key(
            engine, client=client, scopes=[Scope(scope) for scope in scopes], ttl=expires_in, by=_operator()
        )
    )


@keys.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace",
    default="24h",
    show_default=True,
    type=Duration(least=timedelta(0), most=timedelta(days=MAX_GRACE_DAYS)),
    help="How long the old key keeps working (at most 30d, as the API allows).",
)
def keys_rotate(key_id: str, grace: timedelta) -> None:
    """Create the successor of KEY_ID (same client and scopes) and print it once."""
    from api.security import api_keys

    _report(lambda engine: api_keys.rotate_key(engine, key_id=key_id, grace=grace, by=_operator()))


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke KEY_ID now."""
    from api.security import api_keys

    engine = _engine()
    try:
        api_keys.revoke_key(engine, key_id=key_id, by=_operator())
    except api_keys.KeyProblem as error:
        click.secho(f"error: {error.detail}", fg="red", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    click.echo(f"revoked {key_id}")


@keys.command("list")
@click.option("--client", default=None, help="Only this client's keys.")
def keys_list(client: str | None) -> None:
    """List keys (never their secrets)."""
    from api.security import api_keys

    engine = _engine()
    try:
        records = api_keys.list_keys(engine, client=client)
    finally:
        engine.dispose()
    for line in aligned(
        [["id", "client", "expires", "last used", "revoked", "scopes"], *map(key_row, records)]
    ):
        click.echo(line)


def key_row(record: "ApiKey") -> list[str]:
    """One key's line of `keys list` (pure): its times in UTC, as stored, and its scopes as stored (one
    string, space-separated)."""
    return [
        record.id,
        record.client,
        _utc_text(record.expires_at),
        _utc_text(record.last_used_at) if record.last_used_at else "-",
        "yes" if record.revoked_at else "no",
        record.scopes,
    ]


def _utc_text(moment: datetime) -> str:
    from models.tables import as_utc  # the CLI's commands import the models only when they run

    # SQLite hands stored times back without their zone; every one is stored in UTC.
    return f"{as_utc(moment):%Y-%m-%d %H:%M:%S} UTC"


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows of as many cells each as lines, each column as wide as its widest cell (the last one left as it
    is)."""
    if len({len(row) for row in rows}) > 1:
        raise ValueError("every row must have as many cells")
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)] if rows else []
    return [
        " ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]
        ).rstrip()
        for row in rows
    ]
