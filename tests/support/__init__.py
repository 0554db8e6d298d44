"""Helpers shared by agentwatch's tests (real binaries, free ports, webhook receivers).

Import as `from support.binaries import ...`: pytest puts `tests/` on `sys.path` because
`tests/` itself is not a package.
"""
