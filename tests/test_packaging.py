"""The distribution holds every package of the project (they are declared one by one)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_package_is_declared() -> None:
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in declared
        if "." not in top
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found - declared == set()


def test_the_image_builds_from_every_package() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    tops = {name.split(".")[0] for name in declared}
    assert {top for top in tops if f"COPY {top} ./{top}" not in dockerfile} == set()
    assert "CITIZEN_CONTEXT_SECURITY_ENVIRONMENT=production" in dockerfile
