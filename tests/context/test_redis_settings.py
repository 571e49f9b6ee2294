"""The Redis settings, as pure validation: no server."""

import pytest
from pydantic import ValidationError

from context.settings import RedisSettings


def test_a_redis_url_refused_does_not_show_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITIZEN_CONTEXT_REDIS_URL", "http://:hunter2secret@127.0.0.1:6379/0")
    with pytest.raises(ValidationError, match="url") as refused:
        RedisSettings(_env_file=None)
    assert "hunter2secret" not in str(refused.value)
