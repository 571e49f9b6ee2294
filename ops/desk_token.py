"""A sign-in token for the agent desk in development, as `make run` prints it and the browser tests use it."""

import base64
import json
import os
import subprocess
import sys
from collections.abc import Mapping


def development_token(*, agent: str, name: str, env: Mapping[str, str] | None = None) -> str:
    """A token for `agent`: from `citizen-context token` where that command exists.

    `env` is the environment of the API that will check it (its signing keys come from there).
    """
    from ops.cli import main  # here, not at the top: the CLI's modules import this one

    if "token" in main.commands:
        result = subprocess.run(
            [sys.executable, "-m", "ops.cli", "token", "--agent", agent, "--role", "agent", "--name", name],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        return result.stdout.strip()

    # TRANSITIONAL, until the API verifies tokens (and `citizen-context token` exists): an unsigned token
    # that only carries the agent's id and name to the desk, which sends the id as `X-Agent-Id`, the
    # development header the API trusts today. Delete this branch once authentication is merged.
    def part(document: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': agent, 'name': name, 'roles': ['agent']})}."
