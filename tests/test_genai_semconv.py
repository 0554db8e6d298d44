"""The GenAI semantic-convention mapping (`genai_semconv.py`): names, providers, operations and
the messages schema, including payloads of a shape nobody planned for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentwatch import genai_semconv as gen_ai


@pytest.mark.parametrize(
    ("litellm_provider", "expected"),
    [
        ("openai", "openai"),
        ("anthropic", "anthropic"),
        ("gemini", "gcp.gemini"),
        ("vertex_ai", "gcp.vertex_ai"),
        ("bedrock", "aws.bedrock"),
        ("azure", "azure.ai.openai"),
        ("mistral", "mistral_ai"),
        ("xai", "x_ai"),
        ("hosted_vllm", "hosted_vllm"),  # not in the conventions: litellm's name is kept
        (None, None),
        ("", None),
    ],
)
def test_provider_names_are_the_conventions_well_known_values(
    litellm_provider: str | None, expected: str | None
) -> None:
    assert gen_ai.provider_name(litellm_provider) == expected


@pytest.mark.parametrize(
    ("call_type", "operation"),
    [
        ("completion", "chat"),
        ("acompletion", "chat"),
        ("aresponses", "chat"),
        ("embedding", "embeddings"),
        ("aembedding", "embeddings"),
        ("atext_completion", "text_completion"),
        ("image_generation", "chat"),
        (None, "chat"),
        (42, "chat"),
    ],
)
def test_operation_names(call_type: Any, operation: str) -> None:
    assert gen_ai.operation_name(call_type) == operation


def test_chat_messages_become_role_and_parts() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:..."}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
    ]
    assert gen_ai.input_messages(messages) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {
            "role": "user",
            "parts": [{"type": "text", "content": "what is this?"}, {"type": "image_url"}],
        },
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "weather",
                    "arguments": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "result": "rainy"}],
        },
    ]


def test_choices_become_output_messages_with_their_finish_reason() -> None:
    response = {
        "choices": [
            {"finish_reason": "length", "message": {"role": "assistant", "content": "Bonjour"}},
            {"finish_reason": None, "message": {"content": "Salut"}},
        ]
    }
    assert gen_ai.output_messages(response) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Bonjour"}],
            "finish_reason": "length",
        },
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Salut"}],
            "finish_reason": "stop",
        },
    ]


@pytest.mark.parametrize(
    "messages",
    [None, "a string", 42, [None, 3, "x", {"role": None}], [{"content": {"nested": [1, 2]}}]],
)
def test_messages_of_any_shape_convert_without_raising(messages: Any) -> None:
    converted = gen_ai.input_messages(messages)
    json.loads(gen_ai.to_json(converted))
    assert all("role" in m and isinstance(m["parts"], list) for m in converted)


def test_litellm_attributes_read_what_the_payload_has() -> None:
    slo = {
        "call_type": "acompletion",
        "stream": True,
        "api_base": "https://api.openai.com:443/v1",
        "model_parameters": {"temperature": 0.2, "max_tokens": 50, "top_p": True, "seed": "x"},
        "response": {
            "id": "chatcmpl-1",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"finish_reason": "stop"}, {"finish_reason": "tool_calls"}],
        },
    }
    assert gen_ai.litellm_attributes(slo, None) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ["stop", "tool_calls"],
        "gen_ai.request.stream": True,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50,
        "server.address": "api.openai.com",
        "server.port": 443,
    }


@pytest.mark.parametrize(
    "slo",
    [
        {},
        {"response": "not a dict", "model_parameters": [1], "api_base": "http://[::1"},
        {"response": {"choices": "x", "model": 3, "id": b"bytes"}, "stream": None},
        {"response": {"model": "m" * 10_000}},
    ],
)
def test_litellm_attributes_never_raise_and_stay_bounded(slo: dict[str, Any]) -> None:
    attributes = gen_ai.litellm_attributes(slo, object())
    assert attributes["gen_ai.operation.name"] == "chat"
    assert all(len(v) <= 256 for v in attributes.values() if isinstance(v, str))
