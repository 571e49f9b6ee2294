"""The README documents what the code does."""

from pathlib import Path

from click.testing import CliRunner

from ops.cli import main
from ops.cli.processes import traffic_announcement
from ops.settings_doc import settings_rows, settings_table, unknown_variables

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_the_readme_has_the_settings_table_as_the_cli_prints_it() -> None:
    assert settings_table() in README


def test_every_setting_is_documented() -> None:
    assert all(meaning for _name, _default, meaning in settings_rows())


def test_the_settings_command_prints_the_table_and_names_a_setting_set_here_that_does_not_load() -> None:
    good = CliRunner().invoke(main, ["settings"])
    assert good.exit_code == 0, good.output
    assert settings_table() in good.output

    # The defaults alone, and status 0, said 8000 held for a port that every other command refuses.
    bad = CliRunner().invoke(
        main,
        ["settings"],
        env={"CITIZEN_CONTEXT_API_PORT": "abc", "CITIZEN_CONTEXT_TIMELINE_MAX_EVENTS": "0"},
    )
    assert bad.exit_code == 2
    # Every setting that does not load, not only the first: fixing one would only show the next.
    assert "invalid ApiSettings: CITIZEN_CONTEXT_API_PORT" in bad.output
    assert "invalid TimelineSettings: CITIZEN_CONTEXT_TIMELINE_MAX_EVENTS" in bad.output
    assert "abc" not in bad.output.replace(settings_table(), "")  # the value set is never repeated


def test_the_readme_shows_devs_announcement_of_its_traffic_as_dev_prints_it() -> None:
    assert traffic_announcement(1) + "\n" in README  # `make run`'s rate


def test_a_variable_with_the_settings_prefix_that_no_setting_reads_is_named() -> None:
    assert unknown_variables(
        ["CITIZEN_CONTEXT_API_PROT", "CITIZEN_CONTEXT_API_PORT", "PATH", "citizen_context_x"]
    ) == [
        "CITIZEN_CONTEXT_API_PROT",
        "citizen_context_x",  # read in any case, as the settings read theirs
    ]
    # Misspelt, the port was left at its default without a word, by `settings` and every other command.
    misspelt = CliRunner().invoke(main, ["settings"], env={"CITIZEN_CONTEXT_API_PROT": "8001"})
    assert misspelt.exit_code == 2
    assert "CITIZEN_CONTEXT_API_PROT is no setting (misspelt?): it is ignored" in misspelt.output
