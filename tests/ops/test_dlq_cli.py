"""The dead-letter commands' arguments (no broker needed: they are refused before one is asked)."""

import pytest
from click.testing import CliRunner

from ops.cli import main


@pytest.mark.parametrize("command", ["list", "redrive"])
def test_a_reason_the_consumer_never_gives_is_refused_not_taken_for_an_empty_topic(command: str) -> None:
    result = CliRunner().invoke(main, ["dlq", command, "--reason", "unresolved-identiy"])
    assert result.exit_code == 2
    assert "'unresolved-identiy' is no reason the consumer gives" in result.output
    assert "unresolved-identity" in result.output  # the known reasons are listed
