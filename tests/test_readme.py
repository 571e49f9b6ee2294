"""The README documents what the code does."""

from pathlib import Path

from ops.settings_doc import settings_rows, settings_table

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_the_readme_has_the_settings_table_as_the_cli_prints_it() -> None:
    assert settings_table() in README


def test_every_setting_is_documented() -> None:
    assert all(meaning for _name, _default, meaning in settings_rows())
