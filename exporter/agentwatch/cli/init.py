"""`agentwatch init`: write the config file, create and migrate the store, say what is next."""

from __future__ import annotations

import os
from pathlib import Path

import click

from agentwatch.cli._atomic import atomic_output, check_target
from agentwatch.cli._render import redact_url
from agentwatch.cli._session import connect, sqlite_path
from agentwatch.config import Settings, default_config_path, load_settings
from agentwatch.errors import ConfigError

_TEMPLATE = """\
# agentwatch configuration, written by `agentwatch init`.
# Precedence, lowest first: built-in defaults < this file < AGENTWATCH_* environment
# variables < command-line flags / agentwatch.configure(...). Every key: docs/configuration.md

# Where runs, events and the /metrics rollups are kept (shared by every process).
store_url: {store_url}

# Master switch for capture in instrumented programs.
enabled: true

# Keep function arguments and prompts in the store? Off by default: they may hold personal
# data. redact_patterns are regular expressions masked before anything is stored.
capture_arguments: false
capture_prompts: false
# redact_patterns: ['sk-[A-Za-z0-9]+']

# `agentwatch serve` address. 127.0.0.1 keeps /metrics local; use 0.0.0.0 for a remote
# Prometheus.
host: 127.0.0.1
port: {port}

# Prices for models litellm does not know (USD per token):
# prices:
#   my-finetune:
#     input_cost_per_token: 0.000002
#     output_cost_per_token: 0.000008

# Cost attribution: each dimension labels runs, LLM requests, tokens and cost, from the
# run's attributes (track("job", team="search")) or the call's litellm metadata:
# attribution:
#   team: {{max_values: 50}}
#   customer: {{max_values: 1000, litellm_user: true}}

# Spend limits, exported as agentwatch_budget_* metrics for alerting; enforce: true refuses
# new LLM calls in the budget's scope once it is spent (agentwatch.BudgetExceeded):
# budgets:
#   - name: monthly-total
#     period: month          # day, week or month
#     limit_usd: 100
#     timezone: UTC
#   - {{name: search-team, period: month, limit_usd: 50, team: search, enforce: true}}
"""


def _write_atomically(path: Path, text: str, *, create_parent: bool) -> None:
    """Write `text` to `path` readable by the owner only (a URL may hold a password)."""
    with atomic_output(path, create_parent=create_parent, mode=0o600, keep_mode=False) as out:
        out.write(text)


def _yaml_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _absolute(url: str) -> str:
    """A relative SQLite path made absolute: the config is read from any directory."""
    database = sqlite_path(url)
    if database is not None and not database.is_absolute():
        return f"sqlite:///{database.resolve()}"
    return url


def _settings_of_kept_file(path: Path, store_url: str | None) -> Settings:
    """The settings every command will read with the existing file at `path`.

    Raises:
        click.ClickException: the file cannot be read, or `store_url` differs from the
            store it records (init would have to rewrite it).
    """
    try:
        recorded = load_settings(path, environ={})
    except ConfigError as exc:
        raise click.ClickException(
            f"{exc} (pass --force to rewrite {path} from the template)"
        ) from None
    if store_url is not None:
        wanted = _absolute(
            load_settings(Path(os.devnull), environ={}, store_url=store_url).store_url
        )
        if wanted != recorded.store_url:
            raise click.ClickException(
                f"{path} records the store {redact_url(recorded.store_url)}; pass --force "
                f"to rewrite it for {redact_url(wanted)}"
            )
    return load_settings(path, store_url=store_url)


@click.command()
@click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="Store to create and record in the config: sqlite:////abs/path.db or "
    "postgresql://user@host:5432/db. Default: $AGENTWATCH_STORE_URL, or "
    "~/.agentwatch/telemetry.db.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file to write. Default: $AGENTWATCH_CONFIG, or config.yaml in "
    "$AGENTWATCH_HOME (~/.agentwatch).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Rewrite an existing config file from the template (its other settings are lost).",
)
def init(store_url: str | None, config_path: Path | None, force: bool) -> None:
    """Write ~/.agentwatch/config.yaml, create and migrate the store, and print next steps.

    Safe to run again: an existing config file is kept as it is (--force rewrites it from
    the template) and the store it names is created or migrated, which changes nothing when
    it is current. A --store other than the one the kept file records is refused, since
    the file would not say so; pass --force to record it.
    """
    path = config_path or default_config_path()
    kept = path.exists() and not force
    if kept:
        settings = _settings_of_kept_file(path, store_url)
        url = settings.store_url
    else:
        # Checked (and a missing directory created) before the store is, so a refused path
        # leaves nothing behind.
        check_target(path, create_parent=True)
        # Validate the URL exactly as every other command will read it (env and flag); the
        # config file being replaced is deliberately not read.
        settings = load_settings(Path(os.devnull), store_url=store_url)
        url = _absolute(settings.store_url)
    store = connect(url)
    try:
        store.migrate()
    finally:
        store.close()
    if kept:
        click.echo(f"Kept {path} (it exists; --force rewrites it from the template)")
    else:
        _write_atomically(
            path,
            _TEMPLATE.format(store_url=_yaml_string(url), port=settings.port),
            create_parent=True,
        )
        click.echo(f"Wrote {path}")
    shown = redact_url(url)
    click.echo(f"Store ready: {shown} (schema migrated)")
    click.echo(
        f"""
Next steps:
  1. Instrument your code:
       import agentwatch
       agentwatch.instrument_litellm()      # every litellm call is recorded

       @agentwatch.observe
       def my_agent(question: str) -> str: ...

  2. Serve metrics for Prometheus:   agentwatch serve
     (http://{settings.host}:{settings.port}/metrics)
  3. Add a scrape job to prometheus.yml:
       scrape_configs:
         - job_name: agentwatch
           static_configs:
             - targets: ["{settings.host}:{settings.port}"]
  4. Watch runs live:                agentwatch monitor
     Try it with sample data first:  agentwatch demo --no-serve"""
    )
