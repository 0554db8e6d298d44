"""`python -m agentwatch.mixin generate [--mixin FILE] [--out DIR] [--check]`."""

from agentwatch.mixin.cli import main

main()
