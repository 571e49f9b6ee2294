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
