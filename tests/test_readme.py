"""README.md keeps its promises: two commands, links that resolve, config that parses."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from agentwatch.config import read_config_file

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _marked(name: str) -> str:
    match = re.search(rf"<!-- {name} -->\n```\n(.+?)\n```\n<!-- /{name} -->", README, re.S)
    assert match, f"README.md lacks the {name} block"
    return match.group(1).strip()


def test_readme_opens_with_the_demo_and_the_test_command() -> None:
    demo, tests = _marked("demo-command"), _marked("test-command")
    assert "\n" not in demo and "\n" not in tests, "each is one command line"
    assert README.index(demo) < README.index(tests) < README.index("## ")
    assert "agentwatch demo" in demo and "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    extract = re.search(r"test_command=\$\((.+?)\)\n", script, re.S)
    assert extract, ".ci/run extracts the test command from README.md"
    done = subprocess.run(
        ["bash", "-c", extract.group(1)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == _marked("test-command")


@pytest.mark.parametrize(
    "doc", sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]), ids=lambda p: p.name
)
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_config_examples_in_the_readme_are_valid(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.+?)```", README, re.S)
    configs = [b for b in blocks if yaml.safe_load(b) and "budgets" in yaml.safe_load(b)]
    assert configs, "the README shows a budget configuration"
    for block in configs:
        path = tmp_path / "config.yaml"
        path.write_text(block)
        assert read_config_file(path)["budgets"]
