"""`agentwatch web`: helpers for the web configuration file (`--web.config.file`)."""

from __future__ import annotations

import sys

import click


@click.group()
def web() -> None:
    """Helpers for the web configuration file (TLS, basic auth) of `agentwatch serve`."""


@web.command("hash-password")
@click.option(
    "--cost",
    type=click.IntRange(4, 31),
    default=10,
    show_default=True,
    help="bcrypt cost (work factor, 2^cost rounds). Each +1 doubles the time a check takes; "
    "checks are cached, so a scrape pays it once per password change.",
)
def hash_password(cost: int) -> None:
    """Print a bcrypt hash for `basic_auth_users`; the password comes from a prompt or stdin.

    At a terminal it asks twice, hidden. Otherwise it reads the first line of standard input
    (`printf %s "$PASSWORD" | agentwatch web hash-password`). Never pass a password as an
    argument: it would land in shell history and process listings.
    """
    import bcrypt

    if sys.stdin is not None and sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        line = sys.stdin.readline() if sys.stdin is not None else ""
        password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise click.UsageError("empty password (give it at the prompt or on standard input)")
    encoded = password.encode("utf-8")
    if len(encoded) > 72:
        raise click.UsageError("bcrypt uses at most 72 bytes of a password; choose a shorter one")
    click.echo(bcrypt.hashpw(encoded, bcrypt.gensalt(rounds=cost)).decode("ascii"))
