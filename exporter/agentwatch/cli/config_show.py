"""`agentwatch config show`: the effective settings and where each value came from.

Answers "why is it writing there?" without reading code: every setting with its value and
its source (built-in default, the config file, an `AGENTWATCH_*` variable, or a flag),
resolved by the same `config.load_settings` every other command uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import click

from agentwatch import config
from agentwatch.cli._options import settings_options
from agentwatch.cli._render import redact_url
from agentwatch.cli._session import console, echo_json


def _sources(config_path: Path | None, store_url: str | None) -> tuple[dict[str, str], Path, bool]:
    """Per setting, the source that set it; plus the config path and whether it was read."""
    env = os.environ
    explicit = config_path is not None or "AGENTWATCH_CONFIG" in env
    path = config_path or config.default_config_path()
    sources = {f.name: "default" for f in fields(config.Settings) if f.name != "source"}
    read = path.exists() or explicit
    if read:
        for key in config.read_config_file(path):
            sources[key] = str(path)
    for variable, key in config.ENV_VARS.items():
        if env.get(variable, "") != "":
            sources[key] = variable
    if store_url is not None:
        sources["store_url"] = "--store"
    return sources, path, read


def _plain(value: Any) -> Any:
    """JSON-friendly form of a settings value (dataclasses, sets, mappings)."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _short(key: str, value: Any) -> str:
    if key == "store_url":
        return redact_url(str(value))
    if key == "prices":
        return ", ".join(sorted(value)) or "(none)"
    if key == "budgets":
        return (
            ", ".join(
                f"{b.name} ${b.limit_usd:g}/{b.period}" + (" (enforced)" if b.enforce else "")
                for b in value
            )
            or "(none)"
        )
    if key == "attribution":
        return ", ".join(f"{d.name} (max {d.max_values})" for d in value) or "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset | tuple):
        return ", ".join(sorted(str(v) for v in value)) or "(none)"
    return str(value)


@click.group()
def config_group() -> None:
    """Inspect agentwatch's configuration."""


@config_group.command("show")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
def show(store_url: str | None, config_path: Path | None, as_json: bool) -> None:
    """Print every effective setting and its source: default, config file, env or flag.

    Precedence, lowest first: defaults < config file < AGENTWATCH_* variables < flags.
    """
    settings = config.load_settings(config_path, store_url=store_url)
    sources, path, read = _sources(config_path, store_url)
    values = {key: getattr(settings, key) for key in sources}
    if as_json:
        plain = {key: _plain(value) for key, value in values.items()}
        plain["store_url"] = redact_url(settings.store_url)
        echo_json(
            {
                "config_file": str(path),
                "config_file_read": read,
                "settings": {k: {"value": plain[k], "source": sources[k]} for k in sources},
            }
        )
        return
    from rich.table import Table

    out = console()
    state = "read" if read else "not found, defaults apply"
    out.print(f"Config file: {path} ({state})")
    table = Table(show_header=True)
    table.add_column("Setting", style="bold")
    table.add_column("Value", overflow="fold")  # a long store URL wraps, never cut
    table.add_column("Source", style="dim")
    for key, value in values.items():
        table.add_row(key, _short(key, value), sources[key])
    out.print(table)


config_group.name = "config"
