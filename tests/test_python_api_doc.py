"""docs/python-api.md documents every public name of `agentwatch`, as the code has it.

The page is generated from `agentwatch.__all__` and the docstrings
(`python -m agentwatch._apidoc > docs/python-api.md`); it fails here when a name is added,
renamed or re-signed without regenerating it, or when a public name has no docstring.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import agentwatch
from agentwatch import _apidoc

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def test_the_python_api_page_is_current() -> None:
    assert PAGE.read_text(encoding="utf-8") == _apidoc.generate(), (
        "docs/python-api.md is stale: python -m agentwatch._apidoc > docs/python-api.md"
    )


@pytest.mark.parametrize("name", agentwatch.__all__)
def test_every_public_name_has_a_section_with_its_signature(name: str) -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert f"\n## `{name}`\n" in text, f"docs/python-api.md has no section for {name}"
    obj = getattr(agentwatch, name)
    if callable(obj):
        parameters = [p for p in inspect.signature(obj).parameters if p != "self"]
        section = text.split(f"\n## `{name}`\n", 1)[1].split("\n## ", 1)[0]
        for parameter in parameters:
            assert re.search(rf"\b{parameter}\b", section), (name, parameter)
        summary = (inspect.getdoc(obj) or "").split("\n\n", 1)[0].replace("\n", " ")
        assert summary and summary in " ".join(section.split()), name


def test_a_public_name_without_a_docstring_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def undocumented() -> None:
        pass

    monkeypatch.setattr(agentwatch, "__all__", [*agentwatch.__all__, "undocumented"])
    monkeypatch.setattr(agentwatch, "undocumented", undocumented, raising=False)
    with pytest.raises(_apidoc.MissingDocstring, match="undocumented"):
        _apidoc.generate()


def test_check_mode_names_the_regeneration_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "python-api.md"
    stale.write_text("# old\n")
    assert _apidoc.main(["--check", str(stale)]) == 1
    assert "python -m agentwatch._apidoc >" in capsys.readouterr().err
    stale.write_text(_apidoc.generate())
    assert _apidoc.main(["--check", str(stale)]) == 0


def test_docstring_sections_become_lists_and_code() -> None:
    doc = (
        "Do a thing.\n\nArgs:\n    name: the name, which\n        wraps.\n    **extra: more.\n\n"
        "Raises:\n    ValueError: bad.\n\nExample:\n    >>> thing('x')\n\nAfter."
    )
    assert _apidoc.markdown(doc) == (
        "Do a thing.\n\n**Args**\n\n- `name`: the name, which wraps.\n- `**extra`: more.\n\n"
        "**Raises**\n\n- `ValueError`: bad.\n\n**Example**\n\n```python\n>>> thing('x')\n```"
        "\n\nAfter."
    )
