"""The README stays true to the code: every config key documented, the two commands shown."""

import pathlib

from forecaster.cli import config_reference

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_config_key_is_in_the_readme_with_its_default():
    for key, default, help_text in config_reference():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, f"{key} missing from README's config reference"
        assert f"`{default!r}`" in row, f"{key}: README default differs from {default!r}"
        assert help_text, f"{key} has no one-line doc in config.py"


def test_readme_shows_the_two_commands():
    assert "make demo" in README and "make test" in README
    ci = (pathlib.Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "make test" in ci
