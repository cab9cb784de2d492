"""README.md and docs/ stay true to the code: every config key documented as `forecaster config --reference`
prints it, the two commands shown, the commands, files and links they name exist, and the README stays a
first-day read (under 150 lines, everything else one link away in docs/)."""

import pathlib
import re
import subprocess
import sys

import pytest

from forecaster.cli import config_reference, main

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
CONFIG_DOC = (DOCS / "config.md").read_text()
MARKDOWN = {"README.md": README, **{f"docs/{p.name}": p.read_text() for p in sorted(DOCS.glob("*.md"))}}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def _section(text: str, heading: str) -> str:
    """The body of the `## heading` section of a Markdown text (up to the next `## `)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def _table(text: str, header: str) -> list[str]:
    """The lines of the Markdown table that starts with `header`."""
    lines = text.splitlines()
    start = lines.index(header)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    anchors, seen, fenced = set(), {}, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            slug = _slug(m.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_config_key_is_in_the_config_reference_with_its_default():
    for key, default, help_text in config_reference():
        row = next((line for line in CONFIG_DOC.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, f"{key} missing from docs/config.md's config reference"
        assert f"`{default!r}`" in row, f"{key}: docs/config.md default differs from {default!r}"
        assert help_text, f"{key} has no one-line doc in config.py"


def test_config_reference_is_what_forecaster_config_reference_prints():
    printed = subprocess.run([sys.executable, "-m", "forecaster", "config", "--reference"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.splitlines()
    assert _table(CONFIG_DOC, "| key | default | meaning |") == printed, (
        "docs/config.md's table differs from `forecaster config --reference`: paste its output there")


def test_readme_shows_the_two_commands():
    assert "make demo" in README and "make test" in README
    two = _section(README, "Two commands")
    assert re.search(r"^make demo +# ", two, re.M) and re.search(r"^make test +# .*\.ci/run", two, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_readme_is_a_first_day_read():
    lines = README.splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; move detail into docs/ and link it"


def test_readme_shows_how_to_run_it_on_your_data():
    run = _section(README, "Running it")
    assert "forecaster run" in run
    for key in ("data.uri", "data.freq", "model.horizon", "output.uri", "run.date"):
        assert f"--set {key}=" in run, f"README's 'Running it' lacks --set {key}=..."


def test_readme_shows_the_output_layout_and_the_forecast_column():
    layout = _section(README, "Output layout")
    for table in ("forecasts", "rejects", "manifests", "scores", "reports"):
        assert f"<output.uri>/{table}/forecast_date=YYYY-MM-DD" in layout, f"{table}/ missing from the layout"
    assert "`forecast`" in layout and "`model`" in layout


def test_every_doc_is_linked_from_the_readme_and_every_link_resolves():
    more = _section(README, "More documentation")
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)\)", README))
    for target in linked:
        assert (ROOT / target).is_file(), f"README links {target}, which does not exist"
    for doc in sorted(DOCS.glob("*.md")):
        assert f"](docs/{doc.name})" in more, f"docs/{doc.name} is not linked from README's 'More documentation'"


@pytest.mark.parametrize("name", sorted(MARKDOWN))
def test_relative_links_and_anchors_resolve(name):
    base = (ROOT / name).parent
    for target in LINK.findall(MARKDOWN[name]):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (base / path).resolve() if path else ROOT / name
        assert file.exists(), f"{name}: link to {target}: {file} does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file.read_text()), f"{name}: link to {target}: no such heading"


def test_the_report_screenshot_is_shown_and_linked():
    assert (DOCS / "report.png").is_file()
    assert "![" in MARKDOWN["docs/report.md"] and "](report.png)" in MARKDOWN["docs/report.md"]
    assert "](docs/report.md)" in README


def test_commands_targets_and_files_named_in_the_docs_exist(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    commands = set(re.search(r"\{([\w,]+)\}", capsys.readouterr().out).group(1).split(","))
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    ignored = [line.strip().rstrip("/") for line in (ROOT / ".gitignore").read_text().splitlines() if line.strip()]
    for name, text in MARKDOWN.items():
        for command in re.findall(r"(?:bin/|`)forecaster (\w+)", text):
            assert command in commands, f"{name}: `forecaster {command}` is not a command ({sorted(commands)})"
        for target in re.findall(r"(?:^|`)make (\w+)", text, re.M):
            assert target in targets, f"{name}: `make {target}` is not a Makefile target"
        for path in re.findall(r"(?<![\w./-])((?:forecaster|bench|tests|jobs|configs|examples|\.ci)/[\w./*-]+)", text):
            path = path.rstrip(".")
            if any(path == i or path.startswith(f"{i}/") for i in ignored):
                continue  # outputs (bench/work/), not in the repository
            assert list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists(), f"{name}: {path} does not exist"


def test_every_reject_reason_is_documented():
    from forecaster.validate import REASONS

    for code in REASONS:
        for name in ("docs/bad-inputs.md", "docs/output.md"):
            assert f"`{code}`" in MARKDOWN[name], f"reject reason {code} is not in {name}"
