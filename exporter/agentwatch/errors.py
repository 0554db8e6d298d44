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


class StoreNotFound(StoreError):
    """No agentwatch store at that URL: a missing SQLite file, or an empty database.

    Raised by `open_store(url, create=False)`, the way every reader opens a store, so a
    mistyped path is reported instead of silently creating an empty store there. The
    message is one line and says how to create the store (`agentwatch init`).
    """


class IncompatibleStore(StoreError):
    """The database at that URL is not a store this release can use.

    Either it is not an agentwatch store at all (a foreign SQLite file or a PostgreSQL schema
    with tables but no agentwatch `schema_version`), or its schema version is newer than
    this release knows (upgrade agentwatch). Retrying does not help. One-line message.
    """


class RecordRefused(StoreError):
    """The store refused the data of a write (a value it cannot encode or store).

    A string the driver cannot encode (a lone surrogate), an integer beyond the column's
    range, a violated constraint. The batch writer drops the offending record alone and
    counts it as `invalid`; it never treats this as an outage.
    """


class UnsupportedStoreURL(ConfigError):
    """A store URL names a scheme no backend handles."""


class ServeError(AgentwatchError):
    """An HTTP server cannot start: the port is taken or the address does not resolve."""


class WebConfigError(ConfigError):
    """The web configuration file (TLS, basic auth, headers) is invalid or asks for what
    agentwatch cannot honour. The message is one line naming the file and the key."""


class ExecutionNotFound(AgentwatchError):
    """No execution has the id, or an id starting with the prefix, that was asked for."""


class AmbiguousExecutionId(AgentwatchError):
    """Several executions start with the id prefix that was asked for.

    Attributes:
        prefix: what was asked for.
        candidates: some of the matching ids, in id order.
        more: True when there are more matches than `candidates`.
    """

    def __init__(self, prefix: str, candidates: list[str], more: bool = False) -> None:
        self.prefix = prefix
        self.candidates = candidates
        self.more = more
        shown = ", ".join(candidates) + (", ..." if more else "")
        super().__init__(
            f"the ID prefix {prefix!r} matches several runs ({shown}); give more characters"
        )


class BudgetExceeded(AgentwatchError):
    """An LLM call was refused before it was sent: an enforcing budget in its scope is spent.

    Raised by `agentwatch.check_budget(...)` and, with `instrument_litellm()`, by litellm's
    `completion`/`acompletion` (and every other litellm call) before any request leaves the
    process. Only budgets with `enforce: true` raise it. Catch it to degrade gracefully
    (a cheaper model, a cached answer, a polite refusal).

    Attributes:
        budget: the budget's name.
        limit_usd: its limit for one period.
        spend_usd: the spend this process counted in the current period (the store's, other
            processes' unwritten spend and its own), at least the limit; or, for
            `unavailable`, what it last knew.
        period: `day`, `week` or `month`.
        scope: the budget's scope, e.g. `{"team": "search"}`.
        unavailable: True when refused because the store could not be read and the budget
            says `fail_closed: true`, not because the spend reached the limit.
    """

    def __init__(
        self,
        budget: str,
        limit_usd: float,
        spend_usd: float,
        period: str,
        scope: dict[str, str] | None = None,
        *,
        unavailable: bool = False,
    ) -> None:
        self.budget = budget
        self.limit_usd = limit_usd
        self.spend_usd = spend_usd
        self.period = period
        self.scope = dict(scope or {})
        self.unavailable = unavailable
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.scope.items())) or "everything"
        if unavailable:
            message = (
                f"LLM call refused: budget {budget!r} ({_usd(limit_usd)} per {period}, scope "
                f"{where}) cannot be checked, the store is unreadable, and it is fail_closed"
            )
        else:
            message = (
                f"LLM call refused: budget {budget!r} exhausted, {_usd(spend_usd)} spent of "
                f"{_usd(limit_usd)} this {period} (scope {where})"
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_budget_exceeded,
            (self.budget, self.limit_usd, self.spend_usd, self.period, self.scope,
             self.unavailable),
        )  # fmt: skip


def _usd(amount: float) -> str:
    """Dollars with the digits a small LLM spend needs: $1,234.50, $0.0123, $0.000189."""
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.3g}" if amount else "$0"


def _rebuild_budget_exceeded(
    budget: str,
    limit_usd: float,
    spend_usd: float,
    period: str,
    scope: dict[str, str],
    unavailable: bool,
) -> BudgetExceeded:
    return BudgetExceeded(budget, limit_usd, spend_usd, period, scope, unavailable=unavailable)
