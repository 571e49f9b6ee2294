"""Every setting of the project, for `citizen-context settings` and the README's table."""

import json
import os
from collections.abc import Iterable
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from api.desk import DeskSettings
from api.security.settings import SecuritySettings
from api.settings import ApiSettings
from context.settings import IdentitySettings, RedisSettings, SummarySettings, TimelineSettings
from events.settings import ConsumerSettings, KafkaSettings
from events.signing import SigningSettings
from models.database import DatabaseSettings
from ops.settings import ServicesSettings

ALL_SETTINGS: tuple[type[BaseSettings], ...] = (
    ApiSettings,
    SecuritySettings,
    SigningSettings,
    DeskSettings,
    DatabaseSettings,
    RedisSettings,
    TimelineSettings,
    SummarySettings,
    IdentitySettings,
    KafkaSettings,
    ConsumerSettings,
    ServicesSettings,
)


def settings_rows() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting."""
    rows = []
    for settings_class in ALL_SETTINGS:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        for name, field in settings_class.model_fields.items():
            value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
            default = "" if value is None else _shown(value)
            rows.append((f"{prefix}{name}".upper(), default, field.description or ""))
    return rows


# What every setting's environment variable starts with.
PREFIX = "CITIZEN_CONTEXT_"


def unknown_variables(names: Iterable[str]) -> list[str]:
    """The names among `names` that look like the project's settings (its prefix, in any case, as the
    settings read them) but are none of them: a misspelt variable is ignored, its setting left at its
    default without a word."""
    known = {name for name, _default, _meaning in settings_rows()}
    return sorted({name for name in names if name.upper().startswith(PREFIX) and name.upper() not in known})


def misspelt_variables() -> list[str]:
    """`unknown_variables` among the variables of this environment and of `.env` (the settings read both)."""
    from dotenv import dotenv_values

    return unknown_variables([*os.environ, *dotenv_values(".env")])


def _shown(value: Any) -> str:
    """A default as a person would set it; secrets are never printed, only said to be development ones."""
    if isinstance(value, SecretStr):
        return "(development only)"
    if isinstance(value, dict | list):
        return json.dumps(value, default=_shown)
    return str(value)


def settings_table() -> str:
    """The settings as a Markdown table."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | `{default}` | {meaning} |" for name, default, meaning in settings_rows()]
    return "\n".join(lines)
