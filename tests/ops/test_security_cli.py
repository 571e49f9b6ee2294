"""`citizen-context token` and `citizen-context keys` (and `simulate`'s citizen ids), run as a person would
run them."""

import getpass
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session

from api.security import api_keys
from api.security.api_keys import InvalidKey
from api.security.settings import SecuritySettings
from api.security.tokens import TokenVerifier
from models import audit_repository
from models.audit_repository import AuditFilter
from models.database import DatabaseSettings, create_db_engine
from models.tables import AgentRole, AuditAction
from ops.cli.security import aligned


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, without: str = ""
) -> subprocess.CompletedProcess[str]:
    """`citizen-context ARGS` in the session's environment with `env` over it, and `without` left out."""
    inherited = {name: value for name, value in os.environ.items() if name != without}
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        env={**inherited, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Production security settings that load (the database and the signing keys apart).
PRODUCTION = {
    "CITIZEN_CONTEXT_SECURITY_ENVIRONMENT": "production",
    "CITIZEN_CONTEXT_SECURITY_JWT_SECRETS": '{"2026-11": "a-production-secret-of-enough-length"}',
    "CITIZEN_CONTEXT_SECURITY_JWT_ISSUER": "https://idp.example.org/realms/contact-centre",
    "CITIZEN_CONTEXT_SECURITY_PSEUDONYM_KEY": "a-production-pseudonym-key-of-enough-length",
}


def test_token_prints_a_verifiable_development_token() -> None:
    result = run("token", "--agent", "A-42", "--role", "agent", "--role", "supervisor", "--ttl", "15m")
    assert result.returncode == 0, result.stderr
    caller = TokenVerifier(SecuritySettings()).verify(result.stdout.strip())
    assert (caller.id, caller.roles) == ("A-42", frozenset({AgentRole.agent, AgentRole.supervisor}))


def test_token_refuses_to_run_outside_development() -> None:
    production = PRODUCTION
    refused = run("token", env=production)
    assert refused.returncode == 1
    assert "only runs with development settings" in refused.stderr
    assert refused.stdout == ""
    # Production settings that keep a development secret do not even load.
    unsafe = run("token", env={"CITIZEN_CONTEXT_SECURITY_ENVIRONMENT": "production"})
    assert unsafe.returncode == 2
    assert "refused outside development" in unsafe.stderr
    assert "Traceback" not in unsafe.stderr


def test_the_settings_check_asks_for_the_database_outside_development(tmp_path: Path) -> None:
    # `settings` said such a set-up loaded (status 0), while `api`, `keys` and `db` refused it.
    signing = {
        "CITIZEN_CONTEXT_SIGNING_KEYS": '{"s1": "an-erasure-signing-key-of-enough-length"}',
        "CITIZEN_CONTEXT_SIGNING_KEY_ID": "s1",
    }
    checked = run(
        "settings", env={**PRODUCTION, **signing}, cwd=tmp_path, without="CITIZEN_CONTEXT_DATABASE_URL"
    )
    assert checked.returncode == 2, checked.stderr
    assert checked.stderr.count("error: ") == 1, checked.stderr
    assert "set CITIZEN_CONTEXT_DATABASE_URL outside development" in checked.stderr
    # Named beside the security settings' own problems, not hidden by them.
    unsafe = {**PRODUCTION, **signing, "CITIZEN_CONTEXT_SECURITY_JWT_SECRETS": '{"k": "short"}'}
    both = run("settings", env=unsafe, cwd=tmp_path, without="CITIZEN_CONTEXT_DATABASE_URL")
    assert both.returncode == 2, both.stderr
    assert "set CITIZEN_CONTEXT_DATABASE_URL outside development" in both.stderr
    assert "invalid SecuritySettings" in both.stderr
    named = run("settings", env={**PRODUCTION, **signing, "CITIZEN_CONTEXT_DATABASE_URL": "sqlite:///x.db"})
    assert named.returncode == 0, named.stderr


@pytest.mark.parametrize("command", [["keys", "list"], ["db", "upgrade"], ["api", "--port", "0"]])
def test_outside_development_the_database_must_be_named(command: list[str], tmp_path: Path) -> None:
    production = PRODUCTION
    refused = run(*command, env=production, cwd=tmp_path, without="CITIZEN_CONTEXT_DATABASE_URL")
    assert refused.returncode == 2, refused.stderr
    assert "set CITIZEN_CONTEXT_DATABASE_URL outside development" in refused.stderr
    assert not (tmp_path / ".data").exists()  # nothing was created in the default's place
    # Named explicitly, a SQLite file is taken (one on a lasting volume is a choice).
    if command[0] != "api":
        named = run(
            *command, env={**production, "CITIZEN_CONTEXT_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
        )
        assert named.returncode == 0, named.stderr


def test_keys_are_created_listed_rotated_and_revoked(tmp_path: Path) -> None:
    database = DatabaseSettings(url=f"sqlite:///{tmp_path / 'keys.db'}")
    env = {"CITIZEN_CONTEXT_DATABASE_URL": database.url}
    created = run(
        "keys", "create", "--client", "crm", "--scope", "context:read", "--scope", "audit:read", env=env
    )
    assert created.returncode == 0, created.stderr
    key = re.search(r"key:\s+(\S+)", created.stdout)
    key_id = re.search(r"id:\s+(\S+)", created.stdout)
    assert key is not None
    assert key_id is not None
    assert "Shown once" in created.stderr
    assert re.search(r"expires: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", created.stdout, re.MULTILINE), (
        created.stdout
    )

    listed = run("keys", "list", env=env)
    assert key_id[1] in listed.stdout
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(key_id[1])]
    # The scopes as stored (one space-separated string), and the expiry in UTC, saying so.
    assert line.endswith(" audit:read context:read"), line
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC ", line), line
    assert key[1] not in listed.stdout  # never the secret again

    rotated = run("keys", "rotate", key_id[1], "--grace", "1h", env=env)
    assert rotated.returncode == 0, rotated.stderr
    successor = re.search(r"key:\s+(\S+)", rotated.stdout)
    assert successor is not None
    assert "audit:read context:read" in rotated.stdout

    assert run("keys", "revoke", key_id[1], env=env).returncode == 0
    again = run("keys", "revoke", key_id[1], env=env)
    assert again.returncode == 1
    assert "No unrevoked key" in again.stderr
    engine = create_db_engine(database)
    try:
        with pytest.raises(InvalidKey, match="revoked"):
            api_keys.authenticate_key(engine, key[1])
        assert api_keys.authenticate_key(engine, successor[1]).client == "crm"
        # Each change is in the audit trail, by the account that ran the command.
        with Session(engine) as session:
            trail = audit_repository.read_records(session, where=AuditFilter(), limit=10)
    finally:
        engine.dispose()
    assert [(r.actor_kind, r.actor_id, r.actor_role, r.action, r.api_key_id) for r in trail] == [
        ("operator", getpass.getuser(), "operator", AuditAction.key_created, key_id[1]),
        ("operator", getpass.getuser(), "operator", AuditAction.key_rotated, key_id[1]),
        ("operator", getpass.getuser(), "operator", AuditAction.key_revoked, key_id[1]),
    ]


def test_a_bad_duration_or_scope_is_a_usage_error(tmp_path: Path) -> None:
    env = {"CITIZEN_CONTEXT_DATABASE_URL": f"sqlite:///{tmp_path / 'keys.db'}"}
    assert run("keys", "create", "--client", "x", "--scope", "everything", env=env).returncode == 2
    bad = run("keys", "create", "--client", "x", "--scope", "audit:read", "--expires-in", "soon", env=env)
    assert bad.returncode == 2
    assert "expected a number (at most 9 digits) and a unit" in bad.stderr


def test_the_api_refuses_development_settings_beyond_loopback() -> None:
    refused = run("api", "--host", "0.0.0.0", "--port", "0", "--no-migrate")  # noqa: S104 (the point)
    assert refused.returncode == 1
    assert "development security settings on 0.0.0.0" in refused.stderr


def test_the_api_names_a_variable_that_no_setting_reads() -> None:
    # Meant to set the listen address: ignored, the API's host left at its default without a word. The
    # API is asked to listen where development settings are refused, so that it stops once it has started.
    misspelt = {"CITIZEN_CONTEXT_API_HOTS": "0.0.0.0"}  # noqa: S104 (never listened on)
    started = run("api", "--host", "0.0.0.0", "--port", "0", "--no-migrate", env=misspelt)  # noqa: S104
    assert started.returncode == 1
    assert "development security settings on 0.0.0.0" in started.stderr
    warning = next(line for line in started.stderr.splitlines() if "CITIZEN_CONTEXT_API_HOTS" in line)
    assert "no such setting (misspelt?): ignored" in warning


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("token", "--ttl", "9999999d"), "must be from 1s to 30d"),
        (("token", "--ttl", "99999999999d"), "expected a number (at most 9 digits) and a unit"),
        (("keys", "create", "--client", "", "--scope", "audit:read"), "1 to 100 letters"),
        (("keys", "create", "--client", "c" * 101, "--scope", "audit:read"), "1 to 100 letters"),
        # As the API: a key lives from one day to 730, a rotated one's grace at most 30 days.
        (
            ("keys", "create", "--client", "crm", "--scope", "audit:read", "--expires-in", "0s"),
            "from 1d to 730d",
        ),
        (
            ("keys", "create", "--client", "crm", "--scope", "audit:read", "--expires-in", "731d"),
            "from 1d to 730d",
        ),
        (("keys", "rotate", "some-key", "--grace", "31d"), "from 0s to 30d"),
    ],
)
def test_out_of_range_options_are_usage_errors_not_tracebacks(args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("agent", ["", "   ", "a" * 201])
def test_token_refuses_an_agent_id_no_token_may_carry(agent: str) -> None:
    result = run("token", "--agent", agent)
    assert result.returncode == 2
    assert "the agent id must be 1 to 200 characters" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("agent", ["a\nb", "a\tb", "a\x7fb"])
def test_token_refuses_an_agent_id_holding_a_control_character(agent: str) -> None:
    # The API refuses a token whose sub holds one: printing it only put off the error.
    result = run("token", "--agent", agent)
    assert result.returncode == 2
    assert "the agent id must not hold a control character" in result.stderr
    assert result.stdout == ""


def test_token_refuses_an_agent_id_that_is_not_utf_8() -> None:
    # Python reads an argument's bytes that are not UTF-8 as lone surrogates, which the API would refuse.
    result = subprocess.run(
        [sys.executable.encode(), b"-m", b"ops.cli", b"token", b"--agent", b"agent-\xff"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "the agent id must be UTF-8 text" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("citizen", ["../x", "C 1", "", "{C-1}"])
def test_simulate_refuses_a_citizen_id_no_event_may_carry_before_publishing(citizen: str) -> None:
    result = run("simulate", "--citizen", citizen, "--count", "2")
    assert result.returncode == 2
    assert "Invalid value for '--citizen'" in result.stderr
    assert "is not a citizen id" in result.stderr


def test_the_key_list_lines_up_whatever_the_width_of_its_cells() -> None:
    lines = aligned(
        [
            ["id", "client", "last used", "scopes"],
            ["k-1", "a-client-with-a-name-longer-than-twenty", "-", "context:read"],
            ["k-22", "crm", "2026-12-01 05:00:00+0000", "audit:read context:read"],
        ]
    )
    assert lines == [
        "id   client                                  last used                scopes",
        "k-1  a-client-with-a-name-longer-than-twenty -                        context:read",
        "k-22 crm                                     2026-12-01 05:00:00+0000 audit:read context:read",
    ]
