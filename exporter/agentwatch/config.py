"""Settings: one frozen object built from defaults, the config file, the environment and flags.

Precedence, lowest first: built-in defaults < config file (`~/.agentwatch/config.yaml`, or
`AGENTWATCH_CONFIG`) < `AGENTWATCH_*` environment variables < explicit arguments (CLI flags,
`agentwatch.configure(...)`). Validation happens here, once; the rest of the package trusts
a `Settings` object.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentwatch.errors import ConfigError

if TYPE_CHECKING:
    import yaml  # imported when a config file is read: without one, commands start faster

#: Default port of `agentwatch serve`: outside the ports of Prometheus (9090), Pushgateway
#: (9091), Alertmanager (9093), node_exporter (9100), Grafana (3000) and OpenTelemetry's
#: Prometheus exporter (9464).
DEFAULT_PORT = 9747
DEFAULT_HOST = "127.0.0.1"

BudgetPeriod = Literal["day", "week", "month"]
LogFormat = Literal["text", "json"]
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def default_home() -> Path:
    """Directory for the config file and the default SQLite store."""
    return Path(os.environ.get("AGENTWATCH_HOME", str(Path.home() / ".agentwatch")))


def default_config_path() -> Path:
    return Path(os.environ.get("AGENTWATCH_CONFIG", str(default_home() / "config.yaml")))


def default_store_url() -> str:
    return f"sqlite:///{default_home() / 'telemetry.db'}"


#: Most attribution dimensions a config may declare: each multiplies the series of four
#: counter families, and a deployment that needs more wants a data warehouse, not labels.
MAX_ATTRIBUTION_DIMENSIONS = 8
#: Largest `max_values` of one dimension (the store keeps one row per admitted value).
MAX_ATTRIBUTION_VALUES = 100_000


@dataclass(frozen=True)
class AttributionDimension:
    """One cost-attribution dimension: a label on the run, request, token and cost counters.

    Attributes:
        name: the attribute key read from runs (`track(..., team="search")`) and litellm's
            `metadata`, and the label name (a valid Prometheus label name).
        max_values: distinct values kept as labels, per process in-process and for all
            processes together in the store; later values are counted under `__overflow__`.
        litellm_user: litellm's `user=` argument fills this dimension when nothing else does.
    """

    name: str
    max_values: int = 100
    litellm_user: bool = False


@dataclass(frozen=True)
class Budget:
    """A spend limit per calendar period, optionally scoped.

    The scope may name an agent, a model, a provider and any declared attribution dimension
    (`attributes`, sorted `(dimension, value)` pairs); a call is in scope when it matches
    every one. `enforce` makes agentwatch refuse new LLM calls in scope once the period's
    spend reached the limit (`enforcement.py`); `fail_closed` refuses them too while the
    store cannot be read, instead of letting them through unenforced.
    """

    name: str
    period: BudgetPeriod
    limit_usd: float
    timezone: str = "UTC"
    agent: str | None = None
    model: str | None = None
    provider: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    enforce: bool = False
    fail_closed: bool = False

    def scope(self) -> dict[str, str]:
        """Every scope key and value, e.g. `{"agent": "researcher", "team": "search"}`."""
        scope = {k: v for k, v in (("agent", self.agent), ("model", self.model),
                                   ("provider", self.provider)) if v is not None}  # fmt: skip
        scope.update(self.attributes)
        return scope


@dataclass(frozen=True)
class ModelPrice:
    """User price for a custom or self-hosted model, in USD per token."""

    input_cost_per_token: float
    output_cost_per_token: float
    cached_input_cost_per_token: float | None = None


@dataclass(frozen=True)
class Settings:
    """Everything agentwatch can be told. Defaults suit a laptop; see docs/configuration.md."""

    store_url: str = field(default_factory=default_store_url)
    enabled: bool = True
    capture_arguments: bool = False
    capture_prompts: bool = False
    redact_patterns: tuple[str, ...] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    queue_size: int = 10_000
    batch_size: int = 2_000
    flush_interval: float = 0.5
    max_label_sets: int = 2_000
    disabled_agents: frozenset[str] = frozenset()
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    budgets: tuple[Budget, ...] = ()
    otel: bool = False
    audit: bool = False
    log_format: LogFormat = "text"
    web_config_file: str | None = None
    external_url: str | None = None
    attribution: tuple[AttributionDimension, ...] = ()
    budget_refresh_interval: float = 5.0
    sample_rate: float = 1.0
    sample_rates: Mapping[str, float] = field(default_factory=dict)
    sample_slow_seconds: float | None = None
    source: str = "defaults"


#: Environment variables and the setting each one sets (documented in docs/configuration.md).
ENV_VARS: dict[str, str] = {
    "AGENTWATCH_STORE_URL": "store_url",
    "AGENTWATCH_ENABLED": "enabled",
    "AGENTWATCH_CAPTURE_ARGUMENTS": "capture_arguments",
    "AGENTWATCH_CAPTURE_PROMPTS": "capture_prompts",
    "AGENTWATCH_HOST": "host",
    "AGENTWATCH_PORT": "port",
    "AGENTWATCH_QUEUE_SIZE": "queue_size",
    "AGENTWATCH_BATCH_SIZE": "batch_size",
    "AGENTWATCH_MAX_LABEL_SETS": "max_label_sets",
    "AGENTWATCH_OTEL": "otel",
    "AGENTWATCH_AUDIT": "audit",
    "AGENTWATCH_LOG_FORMAT": "log_format",
    "AGENTWATCH_WEB_CONFIG_FILE": "web_config_file",
    "AGENTWATCH_EXTERNAL_URL": "external_url",
    "AGENTWATCH_BUDGET_REFRESH_INTERVAL": "budget_refresh_interval",
    "AGENTWATCH_SAMPLE_RATE": "sample_rate",
    "AGENTWATCH_SAMPLE_SLOW_SECONDS": "sample_slow_seconds",
}

#: CLI flags whose name differs from the setting they override (for error messages).
_FLAG_NAMES = {
    "store_url": "--store",
    "config_path": "--config",
    "web_config_file": "--web.config.file",
    "external_url": "--web.external-url",
}

_FILE_KEYS = frozenset(
    {
        "store_url",
        "enabled",
        "capture_arguments",
        "capture_prompts",
        "redact_patterns",
        "host",
        "port",
        "queue_size",
        "batch_size",
        "flush_interval",
        "max_label_sets",
        "disabled_agents",
        "prices",
        "budgets",
        "otel",
        "audit",
        "log_format",
        "web_config_file",
        "external_url",
        "attribution",
        "budget_refresh_interval",
        "sample_rate",
        "sample_rates",
        "sample_slow_seconds",
    }
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _as_int(value: Any, where: str, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{where}: must be {bound}, got {number}")
    return number


def _as_float(value: Any, where: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if math.isnan(number) or math.isinf(number) or number < minimum:
        raise ConfigError(f"{where}: must be a finite number >= {minimum}, got {value!r}")
    return number


def _check_sampling(settings: Settings, source: str) -> None:
    """Refuse sampling next to a budget scoped by attribution: the hourly aggregates per
    attribution value count sampled-out runs, but answer only for a value admitted within its
    dimension's cap (`store/attribution_aggregates.py`); a value beyond it (or a scope of two
    dimensions) sums the stored calls, which sampling leaves out, so the budget could
    under-count rather than stay exact. Which values the cap admits is only known at run time."""
    sampled = settings.sample_rate < 1.0 or any(r < 1.0 for r in settings.sample_rates.values())
    scoped = next((b.name for b in settings.budgets if b.attributes), None)
    if sampled and scoped is not None:
        raise ConfigError(
            f"{source}: budget {scoped!r} is scoped by attribution and counts stored calls, "
            "which sampling leaves out; keep sample_rate and sample_rates at 1 with it"
        )


def _as_rate(value: Any, where: str) -> float:
    """A sampling rate: a number in [0, 1] (1 stores every run)."""
    number = _as_float(value, where)
    if number > 1.0:
        raise ConfigError(f"{where}: must be between 0 and 1, got {value!r}")
    return number


def _as_store_url(value: Any, where: str) -> str:
    text = str(value).strip()
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme not in {"sqlite", "postgresql", "postgres"}:
        raise ConfigError(
            f"{where}: unsupported store URL {text!r} "
            "(expected sqlite:///path or postgresql://user@host/db)"
        )
    if scheme == "sqlite" and not text.startswith("sqlite:///"):
        raise ConfigError(f"{where}: SQLite URLs look like sqlite:///path/to/file.db")
    return text


#: Keys of a budget mapping other than its scope.
_BUDGET_KEYS = frozenset(
    {"name", "period", "limit_usd", "timezone", "agent", "model", "provider", "enforce",
     "fail_closed"}
)  # fmt: skip


def _parse_budget(raw: Any, where: str) -> Budget:
    """One budget; keys outside `_BUDGET_KEYS` are attribution scopes, checked against the
    declared dimensions by `_check_budget_scopes` once the whole file is read."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: each budget must be a mapping")
    attributes: list[tuple[str, str]] = []
    for key in raw:
        if key in _BUDGET_KEYS:
            continue
        if not isinstance(key, str) or not _LABEL_NAME.match(key):
            raise ConfigError(f"{where}: unknown key {key!r}")
        value = raw[key]
        if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
            raise ConfigError(f"{where}.{key}: expected a non-empty attribution value")
        attributes.append((key, str(value)))
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name: a non-empty name is required")
    period = raw.get("period", "month")
    if period not in ("day", "week", "month"):
        raise ConfigError(f"{where}.period: expected day, week or month, got {period!r}")
    if "limit_usd" not in raw:
        raise ConfigError(f"{where}.limit_usd: required")
    limit = _as_float(raw["limit_usd"], f"{where}.limit_usd")
    tz = str(raw.get("timezone", "UTC"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.timezone: unknown time zone {tz!r}") from None
    scope = {k: raw.get(k) for k in ("agent", "model", "provider")}
    for key, value in scope.items():
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: expected a string")
    return Budget(
        name=name.strip(),
        period=period,
        limit_usd=limit,
        timezone=tz,
        agent=scope["agent"],
        model=scope["model"],
        provider=scope["provider"],
        attributes=tuple(sorted(attributes)),
        enforce=_as_bool(raw.get("enforce", False), f"{where}.enforce"),
        fail_closed=_as_bool(raw.get("fail_closed", False), f"{where}.fail_closed"),
    )


#: Label names a dimension may not take: the labels of agentwatch's metrics (a dimension
#: becomes a label next to them), Prometheus' own, and the keys of a budget mapping (a
#: budget names its dimensions among those keys).
_RESERVED_DIMENSIONS = frozenset(
    {"agent", "model", "provider", "status", "type", "error_type", "tool", "budget", "period",
     "reason", "backend", "metric", "component", "field", "version", "python_version",
     "dimension", "le", "quantile", "job", "instance", "execution_id", "trace_id", "date"}
) | _BUDGET_KEYS | {"limit_usd", "timezone"}  # fmt: skip


def _parse_attribution(raw: Any, where: str) -> tuple[AttributionDimension, ...]:
    """`attribution: {team: {max_values: 50}, customer: {max_values: 1000}}` (a list of
    names, each with the default cap, is accepted too)."""
    if isinstance(raw, list | tuple):
        raw = {name: {} for name in raw} if all(isinstance(n, str) for n in raw) else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of dimension name to its settings")
    if len(raw) > MAX_ATTRIBUTION_DIMENSIONS:
        raise ConfigError(f"{where}: at most {MAX_ATTRIBUTION_DIMENSIONS} dimensions")
    dimensions = []
    for name, entry in raw.items():
        key = f"{where}.{name}"
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ConfigError(f"{key}: a dimension name must be a Prometheus label name")
        if name in _RESERVED_DIMENSIONS:
            raise ConfigError(f"{key}: {name!r} is reserved (a label or budget key already)")
        entry = {} if entry is None else entry
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{key}: expected max_values and litellm_user")
        unknown = sorted(set(entry) - {"max_values", "litellm_user"})
        if unknown:
            raise ConfigError(f"{key}: unknown key {unknown[0]!r}")
        dimensions.append(
            AttributionDimension(
                name=name,
                max_values=_as_int(
                    entry.get("max_values", 100), f"{key}.max_values", 1, MAX_ATTRIBUTION_VALUES
                ),
                litellm_user=_as_bool(entry.get("litellm_user", False), f"{key}.litellm_user"),
            )
        )
    if sum(d.litellm_user for d in dimensions) > 1:
        raise ConfigError(f"{where}: litellm_user may be true for one dimension only")
    return tuple(dimensions)


def _check_budget_scopes(
    budgets: tuple[Budget, ...], attribution: tuple[AttributionDimension, ...], where: str
) -> None:
    """A budget may be scoped only by a declared dimension (a typo must not widen it)."""
    declared = {d.name for d in attribution}
    for budget in budgets:
        for name, _ in budget.attributes:
            if name not in declared:
                raise ConfigError(
                    f"{where}: budget {budget.name!r}: unknown key {name!r} (declare it under "
                    "attribution: to scope a budget by it)"
                )


def _parse_prices(raw: Any, where: str) -> dict[str, ModelPrice]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of model name to prices")
    prices: dict[str, ModelPrice] = {}
    for model, entry in raw.items():
        key = f"{where}.{model}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{key}: expected input_cost_per_token and output_cost_per_token")
        unknown = sorted(
            set(entry)
            - {"input_cost_per_token", "output_cost_per_token", "cached_input_cost_per_token"}
        )
        if unknown:
            raise ConfigError(f"{key}: unknown key {unknown[0]!r}")
        cached = entry.get("cached_input_cost_per_token")
        prices[str(model)] = ModelPrice(
            input_cost_per_token=_as_float(
                entry.get("input_cost_per_token", 0), f"{key}.input_cost_per_token"
            ),
            output_cost_per_token=_as_float(
                entry.get("output_cost_per_token", 0), f"{key}.output_cost_per_token"
            ),
            cached_input_cost_per_token=(
                None if cached is None else _as_float(cached, f"{key}.cached_input_cost_per_token")
            ),
        )
    return prices


def as_external_url(value: Any, where: str) -> str:
    """The console's public base URL (`--web.external-url`): http(s), no query, no slash at
    the end. Raises ConfigError otherwise."""
    import re

    text = value.strip() if isinstance(value, str) else ""
    if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", text):
        raise ConfigError(
            f"{where}: expected an http(s) URL without query, such as "
            f"https://agentwatch.example.com, got {value!r}"
        )
    return text.rstrip("/")


def _coerce(key: str, value: Any, where: str) -> Any:
    """Turn one raw value (from YAML, env or a flag) into the typed settings value."""
    if key == "store_url":
        return _as_store_url(value, where)
    if key in ("enabled", "capture_arguments", "capture_prompts", "otel", "audit"):
        return _as_bool(value, where)
    if key == "log_format":
        text = str(value).strip().lower()
        if text not in ("text", "json"):
            raise ConfigError(f"{where}: expected text or json, got {value!r}")
        return text
    if key == "port":
        return _as_int(value, where, minimum=0, maximum=65535)
    if key in ("queue_size", "batch_size", "max_label_sets"):
        return _as_int(value, where, minimum=1)
    if key == "flush_interval":
        return _as_float(value, where)
    if key == "budget_refresh_interval":
        number = _as_float(value, where, minimum=0.05)
        if number > 3600:
            raise ConfigError(f"{where}: must be at most 3600 seconds, got {value!r}")
        return number
    if key == "sample_rate":
        return _as_rate(value, where)
    if key == "sample_rates":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where}: expected a mapping of agent name to rate (0..1)")
        return {k: _as_rate(v, f"{where}.{k}") for k, v in value.items()}
    if key == "sample_slow_seconds":
        return _as_float(value, where)
    if key == "attribution":
        return _parse_attribution(value, where)
    if key == "host":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a host name or address")
        text = value.strip()
        if not text:
            raise ConfigError(
                f"{where}: empty host would listen on every interface; use 127.0.0.1 (this "
                "machine only) or 0.0.0.0 (every interface) explicitly"
            )
        return text
    if key == "web_config_file":
        text = os.fspath(value) if isinstance(value, os.PathLike) else value
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: expected the path of a web configuration file")
        return str(Path(text.strip()).expanduser())
    if key == "external_url":
        return as_external_url(value, where)
    if key == "redact_patterns":
        if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
            raise ConfigError(f"{where}: expected a list of regular expressions")
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"{where}: invalid regular expression {pattern!r}: {exc}"
                ) from None
        return tuple(value)
    if key == "disabled_agents":
        if not isinstance(value, list | tuple | set | frozenset):
            raise ConfigError(f"{where}: expected a list of agent names")
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of agent names")
        return frozenset(value)
    if key == "prices":
        return _parse_prices(value, where)
    if key == "budgets":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of budgets")
        budgets = tuple(_parse_budget(b, f"{where}[{i}]") for i, b in enumerate(value))
        names = [b.name for b in budgets]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ConfigError(f"{where}: duplicate budget name {duplicate!r}")
        return budgets
    raise ConfigError(f"{where}: unknown key {key!r}")


#: A config file is a few hundred bytes; anything past this is not one (`--config /dev/zero`).
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting a config file may have (budgets and prices need 3). PyYAML builds nodes
#: recursively: 5,000 levels would cost seconds and end in RecursionError.
MAX_CONFIG_DEPTH = 32
#: Most values (counting every use of a YAML alias) a config file may hold, so an alias bomb
#: is refused instead of expanded.
MAX_CONFIG_VALUES = 10_000

_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class _TooDeep(Exception):
    pass


@functools.cache
def _config_loader() -> type[yaml.SafeLoader]:
    """`yaml.SafeLoader` that refuses nesting deeper than `MAX_CONFIG_DEPTH` before
    recursing into it (defined on first use, so PyYAML loads only to read a file)."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        _depth = 0

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            self._depth += 1
            try:
                if self._depth > MAX_CONFIG_DEPTH:
                    raise _TooDeep
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return ConfigLoader


def _read_text(path: Path) -> str:
    """The file as text: UTF-8 (a byte-order mark is allowed), bounded, or one clear line."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read config file: {reason}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes, not a config file")
    if data.startswith(_UTF16_32_BOMS):
        raise ConfigError(f"{path}: encoded as UTF-16 or UTF-32; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{path}: contains NUL bytes (UTF-16 without a byte-order mark?)")
    return text


def _count_values(raw: Any, path: Path) -> None:
    """Refuse more than `MAX_CONFIG_VALUES` values, aliases counted at every use."""
    pending = [raw]
    seen = 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise ConfigError(f"{path}: more than {MAX_CONFIG_VALUES} values, not a config file")
        if isinstance(value, Mapping):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse and validate a YAML config file into settings keyword arguments.

    Any file, however broken (not UTF-8, nested 5,000 levels deep, an alias bomb, a device),
    gives a `ConfigError`, never another exception.

    Raises:
        ConfigError: one line naming the file and, where it applies, the key.
    """
    import yaml

    text = _read_text(path)
    try:
        raw = yaml.load(text, Loader=_config_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    except (_TooDeep, RecursionError):
        raise ConfigError(
            f"{path}: nested more than {MAX_CONFIG_DEPTH} levels deep, not a config file"
        ) from None
    _count_values(raw, path)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _FILE_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}")
        values[key] = _coerce(key, value, f"{path}: {key}")
    web = values.get("web_config_file")
    if web is not None and not Path(web).is_absolute():  # relative to the config file
        values["web_config_file"] = str(path.parent / web)
    return values


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a NUL byte, a name too long: read it and say why
        return True


def _expand_sqlite(url: str) -> str:
    if url.startswith("sqlite:///~"):
        return "sqlite:///" + str(Path(url[len("sqlite:///") :]).expanduser())
    return url


def load_settings(
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from defaults, the config file, the environment and overrides.

    Args:
        config_path: config file to read; defaults to `AGENTWATCH_CONFIG` or
            `~/.agentwatch/config.yaml`. A missing default file is fine; a missing explicit
            file is an error.
        environ: environment to read `AGENTWATCH_*` variables from (default `os.environ`).
        **overrides: explicit values (flags, `configure()` arguments); None means "not given".

    Raises:
        ConfigError: a value is invalid; the message names where it came from.
    """
    env = os.environ if environ is None else environ
    explicit = config_path is not None or "AGENTWATCH_CONFIG" in env
    path = config_path or Path(env.get("AGENTWATCH_CONFIG", str(default_config_path())))
    values: dict[str, Any] = {}
    source = "defaults"
    if explicit or _exists(path):
        values.update(read_config_file(path))
        source = str(path)
    for var, key in ENV_VARS.items():
        if var in env and env[var] != "":
            values[key] = _coerce(key, env[var], var)
    valid = {f.name for f in fields(Settings)}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in valid:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, value, _FLAG_NAMES.get(key, f"--{key.replace('_', '-')}"))
    settings = Settings(**values, source=source)
    _check_budget_scopes(settings.budgets, settings.attribution, source)
    _check_sampling(settings, source)
    return replace(settings, store_url=_expand_sqlite(settings.store_url))
