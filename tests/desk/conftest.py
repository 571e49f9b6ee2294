"""The desk's browser: Debian's Chromium, headless, driven by Playwright; axe-core to check accessibility.

Chromium and axe-core are installed by `citizen-context services tools` (which `make test` runs first).
"""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from api.security.settings import SecuritySettings
from api.security.tokens import mint_development_token
from models.tables import AgentRole
from ops.settings import ServicesSettings
from ops.tools import axe_core_path
from tests.conftest import Stack

AGENT_ID = "A-desk"
AGENT_NAME = "Ada Lovelace"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (a browser per test: the sync API must not outlive a test's loop)."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium is not installed: run `citizen-context services tools` (make test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) on the stack's API; fails the test on a CSP violation."""
    context = browser.new_context(base_url=stack.api_url, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on(
        "console",
        lambda message: problems.append(message.text) if "Content Security" in message.text else None,
    )
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    yield tab
    context.close()
    assert problems == []


@pytest.fixture
def agent_token(stack: Stack) -> str:
    """The one place the desk's tests get a sign-in token (what `citizen-context token` prints)."""
    return mint_development_token(
        SecuritySettings(), agent_id=AGENT_ID, roles=[AgentRole.agent], name=AGENT_NAME
    )


@pytest.fixture
def screenshot_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """docs/desk.png with --update-screenshots, else a file of the test's own (the run stays clean)."""
    if request.config.getoption("--update-screenshots"):
        return Path(__file__).parent.parent.parent / "docs" / "desk.png"
    return tmp_path / "desk.png"


def assert_accessible(page: Page, state: str) -> None:
    """axe-core (every rule but the experimental ones, WCAG 2.2 AA included) finds no violation."""
    path = axe_core_path(ServicesSettings().cache_dir)
    if not path.is_file():
        pytest.fail("axe-core is not installed: run `citizen-context services tools` (make test does)")
    # Evaluated through the DevTools protocol, which the page's CSP does not govern (an injected <script>
    # would rightly be refused).
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(path.read_text())
    results: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    violations = [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in results["violations"]
    ]
    assert violations == [], f"axe-core, {state}:\n{json.dumps(violations, indent=2)}"
