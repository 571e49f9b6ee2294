"""Every setting of the project, for `citizen-context settings` and the README's table."""

from pydantic_settings import BaseSettings

from api.settings import ApiSettings
from context.settings import IdentitySettings, RedisSettings, SummarySettings, TimelineSettings
from events.settings import ConsumerSettings, KafkaSettings
from models.database import DatabaseSettings
from ops.settings import ServicesSettings

ALL_SETTINGS: tuple[type[BaseSettings], ...] = (
    ApiSettings,
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
            default = "" if field.default is None else str(field.default)
            rows.append((f"{prefix}{name}".upper(), default, field.description or ""))
    return rows


def settings_table() -> str:
    """The settings as a Markdown table."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | `{default}` | {meaning} |" for name, default, meaning in settings_rows()]
    return "\n".join(lines)
