"""`/ui/runbooks`: docs/runbooks.md rendered to HTML, each heading with its anchor.

The alerts' `runbook_url` is `<console>/ui/runbooks#<alert name in lower case>`, so a
heading's anchor is its text lower-cased, spaces as `-`, other punctuation dropped (GitHub's
rule, which gives the same anchors on the repository page). Raw HTML in the Markdown is
escaped, never passed through. The page ships in the package (`agentwatch/console/
runbooks.md`, a copy of docs/runbooks.md that a test keeps equal).
"""

from __future__ import annotations

import functools
import re
from importlib import resources


def anchor(text: str) -> str:
    """The anchor of a heading: `AgentwatchBudgetExhausted` -> `agentwatchbudgetexhausted`."""
    lowered = text.strip().lower()
    return re.sub(r"[^\w\- ]", "", lowered).replace(" ", "-")


def render_markdown(text: str) -> str:
    """HTML for `text` (CommonMark plus tables), headings carrying `id` anchors."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and index + 1 < len(tokens):
            token.attrSet("id", anchor(tokens[index + 1].content))
    return str(md.renderer.render(tokens, md.options, {}))


@functools.cache
def runbooks_html() -> str:
    """The packaged runbooks page as HTML (rendered once per process)."""
    text = resources.files("agentwatch.console").joinpath("runbooks.md").read_text("utf-8")
    return render_markdown(text)
