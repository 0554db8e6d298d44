"""The exceptions agentwatch raises to its callers.

Telemetry failures inside a host program are never raised (they are counted and logged);
these are for the boundaries a user touches: configuration, store URLs, the CLI.
"""

from __future__ import annotations


class AgentwatchError(Exception):
    """Base class of every exception agentwatch raises on purpose."""


class ConfigError(AgentwatchError):
    """A configuration file, environment variable or flag is invalid.

    The message is one line naming the source (file path or variable) and the key.
    """


class StoreError(AgentwatchError):
    """The durable store cannot be opened, migrated or queried."""


class UnsupportedStoreURL(ConfigError):
    """A store URL names a scheme no backend handles."""


class ServeError(AgentwatchError):
    """An HTTP server cannot start: the port is taken or the address does not resolve."""
