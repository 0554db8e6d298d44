"""The price of one LLM call, or an honest "unknown".

Order of trust: the cost the provider or litellm reported for the call (it knows tiers,
caching and batch discounts) when it is a finite number >= 0; else the user's price for the
model (`prices:` in the config); else litellm's bundled price map; else None. None means
*unpriced*: the call is counted in `agentwatch_llm_unpriced_requests_total`, never as a silent
zero. The result is never NaN, infinite or negative.

The bundled map is read without touching the network: `litellm.model_cost` when litellm is
already imported (it includes `litellm.register_model` additions), otherwise the JSON file
shipped inside the litellm package, so pricing a manual `record_llm_call` does not pay the
seconds litellm takes to import.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentwatch.config import ModelPrice

#: (input, output, cached input) USD per token.
_Price = tuple[float, float, float]

_BUNDLED_FILE = "model_prices_and_context_window_backup.json"
_lock = threading.Lock()
_bundled: dict[str, Any] | None = None
_cache: dict[tuple[str, str | None], _Price | None] = {}
_CACHE_MAX = 4096


def ensure_offline_cost_map() -> None:
    """Make litellm use its bundled price map instead of fetching one at import time.

    Must run before `import litellm`; a value the user already set is kept.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def valid_cost(value: Any) -> float | None:
    """`value` as a float if it is a finite number >= 0, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isfinite(number) and number >= 0.0:
        return number
    return None


def llm_cost(
    model: str | None,
    provider: str | None,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    *,
    reported: Any = None,
    prices: Mapping[str, ModelPrice] | None = None,
) -> float | None:
    """Cost in USD of one call, or None when nothing can price it.

    Args:
        model: model name as the caller or litellm names it (`gpt-4o-mini`,
            `anthropic/claude-...`).
        provider: litellm's `custom_llm_provider` (`openai`, `anthropic`, ...), if known.
        input_tokens: prompt tokens, including `cached_tokens`.
        output_tokens: completion tokens, including reasoning tokens.
        cached_tokens: prompt tokens served from the provider's cache (cheaper rate).
        reported: the cost the provider/litellm reported; used when valid.
        prices: user prices by model name (settings.prices).
    """
    cost = valid_cost(reported)
    if cost is not None:
        return cost
    price = _user_price(model, provider, prices) if prices else None
    if price is None:
        price = bundled_price(model, provider)
    if price is None:
        return None
    cached = min(max(cached_tokens, 0), max(input_tokens, 0))
    total = (
        price[0] * (max(input_tokens, 0) - cached)
        + price[2] * cached
        + price[1] * max(output_tokens, 0)
    )
    return total if math.isfinite(total) and total >= 0.0 else None


def _user_price(
    model: str | None, provider: str | None, prices: Mapping[str, ModelPrice]
) -> _Price | None:
    if not model:
        return None
    entry = prices.get(model)
    if entry is None and provider:
        entry = prices.get(f"{provider}/{model}")
    if entry is None and "/" in model:
        entry = prices.get(model.split("/", 1)[1])
    if entry is None:
        return None
    cached = entry.cached_input_cost_per_token
    return (
        entry.input_cost_per_token,
        entry.output_cost_per_token,
        entry.input_cost_per_token if cached is None else cached,
    )


def bundled_price(model: str | None, provider: str | None) -> _Price | None:
    """Per-token prices from litellm's bundled map, or None if the model is not in it."""
    if not model:
        return None
    key = (model, provider)
    try:
        return _cache[key]
    except KeyError:
        pass
    price = _lookup(model, provider)
    if len(_cache) < _CACHE_MAX:
        _cache[key] = price
    return price


def _lookup(model: str, provider: str | None) -> _Price | None:
    table = _price_table()
    if not table:
        return None
    candidates = [model]
    if provider:
        candidates.append(f"{provider}/{model}")
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for name in candidates:
        entry = table.get(name)
        if isinstance(entry, Mapping):
            price = _entry_price(entry)
            if price is not None:
                return price
    return None


def _entry_price(entry: Mapping[str, Any]) -> _Price | None:
    inp = valid_cost(entry.get("input_cost_per_token"))
    out = valid_cost(entry.get("output_cost_per_token"))
    if inp is None and out is None:
        return None
    inp = inp or 0.0
    cached = valid_cost(entry.get("cache_read_input_token_cost"))
    return (inp, out or 0.0, inp if cached is None else cached)


def _price_table() -> Mapping[str, Any] | None:
    litellm = sys.modules.get("litellm")
    table = getattr(litellm, "model_cost", None) if litellm is not None else None
    if isinstance(table, Mapping) and table:
        return table
    return _bundled_table()


def _bundled_table() -> dict[str, Any] | None:
    global _bundled
    if _bundled is not None:
        return _bundled
    with _lock:
        if _bundled is None:
            _bundled = _read_bundled_file()
    return _bundled


def _read_bundled_file() -> dict[str, Any]:
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return {}
    if spec is None or not spec.submodule_search_locations:
        return {}
    for location in spec.submodule_search_locations:
        path = Path(location) / _BUNDLED_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def clear_cache() -> None:
    """Forget looked-up prices (after `litellm.register_model`, or in tests)."""
    _cache.clear()
