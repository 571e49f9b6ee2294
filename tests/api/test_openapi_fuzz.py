"""Schemathesis against a live API process: no server error, and every response matches the OpenAPI."""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests import access
from tests.conftest import Stack

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES_PER_OPERATION = 30
# Bounds: each request, and the whole run (schemathesis's --max-time would instead fuzz until it is spent).
REQUEST_TIMEOUT_S = 10
RUN_TIMEOUT_S = 600
# Fixed, so a finding reproduces; change it to explore further.
SEED = 20261128


def loopback_only_environment() -> dict[str, str]:
    """The test process's environment without proxies: every request goes straight to 127.0.0.1."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {name: value for name, value in os.environ.items() if name.lower() not in proxies}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
    return env


def test_the_live_api_conforms_to_its_openapi_description(stack: Stack, tmp_path: Path) -> None:
    stack.consumer()
    stack.api()
    schema_url = f"{stack.api_url}/openapi.json"
    document = httpx.get(schema_url, timeout=10).json()
    # Where schemathesis sends its requests: the schema's own servers, if it named any, else its origin.
    assert all(
        urlsplit(server["url"]).hostname in {None, "127.0.0.1"} for server in document.get("servers", [])
    )
    assert urlsplit(stack.api_url).hostname == "127.0.0.1"

    command = [
        str(SCHEMATHESIS),
        "run",
        schema_url,
        "--url",
        stack.api_url,
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        str(REQUEST_TIMEOUT_S),
        "--max-redirects",
        "0",
        "--generation-database",
        "none",
        "--no-color",
        # A supervisor with a reason reads any citizen; the calls it may not make answer a documented 403.
        *(
            option
            for name, value in access.supervisor().items()
            for option in ("--header", f"{name}: {value}")
        ),
    ]
    try:
        result = subprocess.run(
            command,
            cwd=tmp_path,
            env=loopback_only_environment(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as timeout:
        raise AssertionError(
            f"schemathesis did not finish in {RUN_TIMEOUT_S}s:\n{timeout.stdout!r}"
        ) from None
    output = result.stdout + result.stderr
    print(output)  # shown by pytest on failure, or with -s
    assert result.returncode == 0, f"schemathesis exited with {result.returncode}:\n{output}"
    # Every operation was exercised, and every generated case passed both checks.
    assert re.search(r"Selected: (\d+)/\1\s+Tested: \1\b", output), output
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None, output
    assert int(counts[1]) == int(counts[2]) >= 100, output
