"""Pricing: reported cost first, then user prices, then litellm's bundled map, else unknown."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch import cost
from agentwatch.config import ModelPrice

# litellm's own bundled prices, read from the file it ships (not hard-coded here)
_spec = importlib.util.find_spec("litellm")
assert _spec is not None and _spec.submodule_search_locations
_BUNDLED = json.loads(
    (
        Path(next(iter(_spec.submodule_search_locations)))
        / "model_prices_and_context_window_backup.json"
    ).read_text()
)
MINI = _BUNDLED["gpt-4o-mini"]


def test_reported_cost_wins_when_valid() -> None:
    assert cost.llm_cost("gpt-4o-mini", "openai", 10, 20, reported=0.5) == 0.5
    assert cost.llm_cost("gpt-4o-mini", "openai", 10, 20, reported=0) == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, "abc", True])
def test_invalid_reported_cost_falls_back_to_prices(bad: object) -> None:
    priced = cost.llm_cost("gpt-4o-mini", "openai", 10, 20, reported=bad)
    expected = 10 * MINI["input_cost_per_token"] + 20 * MINI["output_cost_per_token"]
    assert priced == pytest.approx(expected)


def test_bundled_price_applies_the_cached_token_rate() -> None:
    priced = cost.llm_cost("gpt-4o-mini", "openai", 100, 50, cached_tokens=40)
    expected = (
        60 * MINI["input_cost_per_token"]
        + 40 * MINI["cache_read_input_token_cost"]
        + 50 * MINI["output_cost_per_token"]
    )
    assert priced == pytest.approx(expected)


def test_provider_prefixed_names_are_found() -> None:
    assert cost.llm_cost("openai/gpt-4o-mini", None, 10, 0) == pytest.approx(
        10 * MINI["input_cost_per_token"]
    )


def test_user_price_overrides_the_bundled_map_and_prices_unknown_models() -> None:
    prices = {
        "gpt-4o-mini": ModelPrice(1e-3, 2e-3),
        "my-llama": ModelPrice(1e-6, 3e-6, cached_input_cost_per_token=5e-7),
    }
    assert cost.llm_cost("gpt-4o-mini", "openai", 1, 1, prices=prices) == pytest.approx(3e-3)
    assert cost.llm_cost("my-llama", "vllm", 10, 10, cached_tokens=4, prices=prices) == (
        pytest.approx(6 * 1e-6 + 4 * 5e-7 + 10 * 3e-6)
    )


def test_unknown_model_is_unpriced_not_free() -> None:
    assert cost.llm_cost("claude-3-5-sonnet-20241022", "anthropic", 10, 20) is None
    assert cost.llm_cost("no-such-model-anywhere", None, 10, 20) is None
    assert cost.llm_cost(None, None, 10, 20) is None


def test_pricing_without_litellm_imported_reads_the_bundled_file() -> None:
    code = (
        "import sys\n"
        "from agentwatch.cost import llm_cost\n"
        "print(llm_cost('gpt-4o-mini', 'openai', 10, 20))\n"
        "print('litellm' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert float(out[0]) == pytest.approx(
        10 * MINI["input_cost_per_token"] + 20 * MINI["output_cost_per_token"]
    )
    assert out[1] == "False"


def test_ensure_offline_cost_map_keeps_a_user_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "False")
    cost.ensure_offline_cost_map()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "False"
    monkeypatch.delenv("LITELLM_LOCAL_MODEL_COST_MAP")
    cost.ensure_offline_cost_map()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def test_result_is_never_negative_or_nan() -> None:
    prices = {"weird": ModelPrice(1e-6, 1e-6)}
    assert cost.llm_cost("weird", None, -5, -5, cached_tokens=-3, prices=prices) == 0.0
    assert cost.valid_cost(math.nan) is None
    assert cost.valid_cost(-0.1) is None
    assert cost.valid_cost("0.25") == 0.25
