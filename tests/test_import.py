"""`import agentwatch` stays cheap: litellm (seconds to import) loads only when asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(out.stdout.split())


def test_import_agentwatch_does_not_import_litellm() -> None:
    modules = _modules_after("import agentwatch")
    assert "agentwatch" in modules
    assert "litellm" not in modules
    assert "agentwatch.capture" not in modules  # submodules load on first use


def test_using_the_decorator_and_manual_api_does_not_import_litellm() -> None:
    modules = _modules_after(
        "import tempfile, agentwatch\n"
        "agentwatch.configure(store_url='sqlite:///' + tempfile.mkdtemp() + '/t.db')\n"
        "@agentwatch.observe\n"
        "def f():\n"
        "    agentwatch.record_llm_call('gpt-4o-mini', input_tokens=1)\n"
        "f()\n"
    )
    assert "agentwatch.capture" in modules
    assert "agentwatch.writer" in modules  # it really recorded (and priced) the call
    assert "litellm" not in modules


@pytest.mark.slow
def test_instrument_litellm_imports_it_offline() -> None:
    modules = _modules_after(
        "import os\n"
        "os.environ.pop('LITELLM_LOCAL_MODEL_COST_MAP', None)\n"
        "import agentwatch\n"
        "agentwatch.instrument_litellm()\n"
        "assert os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] == 'True'\n"
    )
    assert "litellm" in modules


def test_tracing_and_json_logs_load_nothing_until_turned_on() -> None:
    modules = _modules_after(
        "import tempfile, agentwatch\n"
        "agentwatch.configure(store_url='sqlite:///' + tempfile.mkdtemp() + '/t.db')\n"
        "with agentwatch.track('job'):\n"
        "    agentwatch.record_llm_call('gpt-4o-mini', input_tokens=1)\n"
    )
    assert "agentwatch.writer" in modules
    assert not {m for m in modules if m.startswith(("opentelemetry", "pythonjsonlogger"))}
    assert not {"agentwatch.tracing", "agentwatch.logs", "agentwatch.genai_semconv"} & modules


def test_tracing_loads_opentelemetry_when_turned_on() -> None:
    modules = _modules_after(
        "import os, tempfile\n"
        "os.environ['AGENTWATCH_OTEL'] = '1'\n"
        "os.environ['OTEL_TRACES_EXPORTER'] = 'none'\n"
        "import agentwatch\n"
        "agentwatch.configure(store_url='sqlite:///' + tempfile.mkdtemp() + '/t.db')\n"
        "with agentwatch.track('job'):\n"
        "    pass\n"
    )
    assert {"agentwatch.tracing", "opentelemetry.trace"} <= modules
    assert "litellm" not in modules


def test_the_cli_starts_without_rich_prometheus_client_or_the_writer() -> None:
    """`agentwatch --help` (and the start of every command) imports none of the heavy
    modules; a command imports rich when it renders and the store when it opens one."""
    modules = _modules_after(
        "import sys\nfrom agentwatch.cli import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
    )
    assert "agentwatch.cli.monitor" in modules  # every command is registered
    for heavy in ("rich", "prometheus_client", "agentwatch.store.base", "agentwatch.rollups"):
        assert heavy not in modules, heavy
