"""Sampling of stored detail: decided once per run tree, so a tree is whole or absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.config import load_settings
from agentwatch.errors import ConfigError
from agentwatch.model import ExecutionFinished
from agentwatch.sampling import SAMPLED_RATE_ATTRIBUTE, SamplingPolicy, TreeSampler, fraction
from conftest import Records


def _tree(
    records: Records, *, failed_child: bool = False, root_seconds: float = 0.5
) -> list[ExecutionFinished]:
    """A root run with two nested runs, in the order they end (children first)."""
    root = records.execution(agent="planner", duration=root_seconds)
    kids = [
        records.execution(agent="worker", parent_id=root.id, duration=0.1),
        records.execution(
            agent="worker",
            parent_id=root.id,
            duration=0.1,
            **({"error_type": "ValueError"} if failed_child else {}),
        ),
    ]
    return [ExecutionFinished(k) for k in kids] + [ExecutionFinished(root)]


def _offer(
    sampler: TreeSampler, tree: list[ExecutionFinished]
) -> list[tuple[ExecutionFinished, bool]]:
    root_id = tree[-1].execution.id
    decided = []
    for item in tree:
        decided += sampler.offer(item, root_id)
    return decided


def test_trees_are_whole_or_absent_and_the_rate_is_about_honoured(records: Records) -> None:
    sampler = TreeSampler(SamplingPolicy(default_rate=0.25))
    kept_trees = 0
    for _ in range(2_000):
        decided = _offer(sampler, _tree(records))
        assert len(decided) == 3  # every run comes back exactly once, with its root
        flags = {keep for _, keep in decided}
        assert len(flags) == 1  # whole or absent
        kept_trees += flags.pop()
    assert 400 < kept_trees < 600  # 25 % of 2,000 (binomial sd ~19)
    assert sampler.sampled_out == 3 * (2_000 - kept_trees)


def test_failed_or_slow_trees_are_always_kept(records: Records) -> None:
    sampler = TreeSampler(SamplingPolicy(default_rate=0.0, slow_seconds=5.0))
    assert all(keep for _, keep in _offer(sampler, _tree(records, failed_child=True)))
    assert all(keep for _, keep in _offer(sampler, _tree(records, root_seconds=6.0)))
    assert not any(keep for _, keep in _offer(sampler, _tree(records)))


def test_kept_runs_carry_the_rate(records: Records) -> None:
    sampler = TreeSampler(SamplingPolicy(default_rate=0.0, rates={"planner": 1.0}))
    decided = _offer(sampler, _tree(records, failed_child=True))
    assert all(keep for _, keep in decided)  # planner at 1.0: nothing to record
    assert all(SAMPLED_RATE_ATTRIBUTE not in i.execution.attributes for i, _ in decided)
    sampler = TreeSampler(SamplingPolicy(default_rate=0.0))
    decided = _offer(sampler, _tree(records, failed_child=True))
    assert all(i.execution.attributes[SAMPLED_RATE_ATTRIBUTE] == 0.0 for i, _ in decided)


def test_decision_is_the_same_in_every_process(records: Records) -> None:
    assert fraction("exec_000001") == fraction("exec_000001")
    assert 0.0 <= fraction("x") < 1.0


def test_holding_is_bounded_and_then_keeps_the_tree_whole(records: Records) -> None:
    sampler = TreeSampler(SamplingPolicy(default_rate=0.0), max_held=1)
    decided = _offer(sampler, _tree(records))
    assert len(decided) == 3 and all(keep for _, keep in decided)


def test_no_sampling_holds_nothing(records: Records) -> None:
    sampler = TreeSampler(SamplingPolicy())
    tree = _tree(records)
    assert sampler.offer(tree[0], tree[-1].execution.id) == [(tree[0], True)]


def test_sampling_settings_from_a_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("sample_rates: {crawler: 0.05, support-bot: 1}\nsample_slow_seconds: 30\n")
    settings = load_settings(path, environ={"AGENTWATCH_SAMPLE_RATE": "0.25"})
    assert settings.sample_rate == 0.25
    assert settings.sample_rates == {"crawler": 0.05, "support-bot": 1.0}
    assert settings.sample_slow_seconds == 30.0
    assert load_settings(None, environ={}).sample_rate == 1.0  # default: store everything


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("", {"AGENTWATCH_SAMPLE_RATE": "1.5"}),
        ("", {"AGENTWATCH_SAMPLE_RATE": "nan"}),
        ("", {"AGENTWATCH_SAMPLE_RATE": "-0.1"}),
        ("", {"AGENTWATCH_SAMPLE_SLOW_SECONDS": "soon"}),
        ("sample_rates: [crawler]\n", {}),
        ("sample_rates: {crawler: lots}\n", {}),
        ("sample_rates: {crawler: 2}\n", {}),
    ],
)
def test_a_bad_sampling_setting_is_one_config_error(
    tmp_path: Path, text: str, env: dict[str, str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=env)
    assert "\n" not in str(caught.value) and "sample" in str(caught.value).lower()


def test_sampling_next_to_a_budget_scoped_by_attribution_is_refused(tmp_path: Path) -> None:
    """Such a budget sums stored calls, which sampling leaves out: it would under-count."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "attribution: {team: {max_values: 5}}\n"
        "budgets: [{name: search-team, period: month, limit_usd: 5, team: search}]\n"
    )
    assert load_settings(path, environ={}).budgets  # alone: fine
    with pytest.raises(ConfigError, match=r"search-team.*sampl"):
        load_settings(path, environ={"AGENTWATCH_SAMPLE_RATE": "0.5"})
