"""`python -m agentwatch.mixin`: regenerate the bundle from one mixin config."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agentwatch.errors import AgentwatchError, ConfigError


class _Group(click.Group):
    """Typed errors become one line on stderr: exit 2 for bad input, 1 otherwise."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"Error: {' '.join(str(exc).split())}", err=True)
            sys.exit(2)
        except AgentwatchError as exc:
            click.echo(f"Error: {' '.join(str(exc).split())}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
def cli() -> None:
    """The agentwatch monitoring mixin: rules, alerts, dashboards, Kubernetes manifests."""


_MIXIN = click.option(
    "--mixin",
    "mixin",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="YAML overlay with the values to change (merged over the defaults). "
    "Default: none, the defaults of prometheus/mixin.yaml.",
)


@cli.command()
@_MIXIN
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Root to write prometheus/, grafana/ and kubernetes/ under.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 and list the files that differ from what would be written.",
)
def generate(mixin: Path | None, out: Path, check: bool) -> None:
    """Write every rule, dashboard and manifest file from the mixin config."""
    from agentwatch.mixin.config import load_config

    config = load_config(mixin)
    try:
        from agentwatch.mixin.render import render_all

        files = render_all(config)
    except ImportError as exc:
        raise AgentwatchError(
            f"the dashboards need grafana-foundation-sdk ({exc.name} is missing): "
            "pip install '.[mixin]' in the agentwatch checkout"
        ) from None
    stale = []
    for relative, text in files.items():
        path = out / relative
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise AgentwatchError(f"{path}: cannot read ({exc.strerror})") from None
        if current == text:
            continue
        stale.append(relative)
        if not check:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise AgentwatchError(f"{path}: cannot write ({exc.strerror})") from None
    if check:
        if stale:
            click.echo(
                f"stale: {', '.join(stale)}; run python -m agentwatch.mixin generate", err=True
            )
            sys.exit(1)
        click.echo(f"{len(files)} files up to date")
        return
    click.echo(f"wrote {len(stale)} of {len(files)} files under {out}")


@cli.command()
@_MIXIN
def show(mixin: Path | None) -> None:
    """Print the effective mixin config (defaults plus overlay) as commented YAML."""
    from agentwatch.mixin.config import load_config, to_yaml

    click.echo(to_yaml(load_config(mixin)), nl=False)


def main() -> None:
    cli(prog_name="python -m agentwatch.mixin")
