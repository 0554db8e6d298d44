"""OpenTelemetry GenAI semantic conventions: attribute names and how agentwatch's data maps.

Pure functions and constants, no OpenTelemetry import: `tracing.py` builds spans from them and
the litellm integration calls `litellm_attributes` on its payload. The names follow the GenAI
conventions as maintained in open-telemetry/semantic-conventions-genai (status: development):
`gen_ai.provider.name` (not the deprecated `gen_ai.system`), `gen_ai.usage.cache_read.input_tokens`
and `gen_ai.usage.reasoning.output_tokens`; message content follows the input/output messages
JSON schemas (`role` + `parts`).

Cost has no convention yet. It is recorded as `agentwatch.cost_usd` (USD, double) on LLM call
spans only, which is where the open proposal `gen_ai.usage.cost.*`
(open-telemetry/semantic-conventions-genai pull request 443) puts it: on inference spans, not
on agent spans, so that summing a trace never counts a call twice.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from agentwatch.validation import repair_text

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

#: The opt-in event that carries a call's messages (`gen_ai-events.md`); recorded as a span
#: event of the LLM call's span, only when `capture_prompts` is on.
INFERENCE_DETAILS_EVENT = "gen_ai.client.inference.operation.details"

#: agentwatch's own namespace, for what the conventions do not cover (yet).
COST_USD = "agentwatch.cost_usd"
EXECUTION_ID = "agentwatch.execution_id"
EVENT_KIND = "agentwatch.event.kind"

INVOKE_AGENT = "invoke_agent"
EXECUTE_TOOL = "execute_tool"
CHAT = "chat"

#: Run attribute (`track("turn", conversation_id=...)`) that becomes `gen_ai.conversation.id`
#: on the run's span, its nested runs and its LLM calls.
CONVERSATION_ATTRIBUTE = "conversation_id"

#: litellm's `custom_llm_provider` -> the convention's well-known `gen_ai.provider.name`.
#: Providers not listed keep litellm's name (custom values are allowed).
_PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "deepseek": "deepseek",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "groq": "groq",
    "watsonx": "ibm.watsonx.ai",
    "watsonx_text": "ibm.watsonx.ai",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "moonshot": "moonshot_ai",
    "perplexity": "perplexity",
    "xai": "x_ai",
}

#: litellm `call_type` (sync and `a`-prefixed async) -> `gen_ai.operation.name`.
_OPERATIONS = {
    "completion": CHAT,
    "responses": CHAT,
    "text_completion": "text_completion",
    "embedding": "embeddings",
}

#: litellm `model_parameters` keys -> request attributes.
_REQUEST_PARAMETERS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}

#: Longest attribute string kept from a provider payload (ids, model names).
_MAX_TEXT = 256


def provider_name(provider: str | None) -> str | None:
    """The convention's provider name for a litellm provider (`gemini` -> `gcp.gemini`)."""
    if not provider:
        return None
    return _PROVIDERS.get(provider, provider)


def operation_name(call_type: Any) -> str:
    """`gen_ai.operation.name` of a litellm call type (`acompletion` -> `chat`)."""
    if not isinstance(call_type, str):
        return CHAT
    if call_type.startswith("a") and call_type[1:] in _OPERATIONS:
        call_type = call_type[1:]
    return _OPERATIONS.get(call_type, CHAT)


def litellm_attributes(slo: Mapping[str, Any], response_obj: Any) -> dict[str, Any]:
    """Span attributes read from litellm's standard logging payload. Never raises.

    The operation, response model and id, finish reasons, streaming flag, sampling
    parameters and server address: what `Event` does not carry because the store has no
    use for it. Values are typed and bounded as OpenTelemetry attributes must be.
    """
    attributes: dict[str, Any] = {}
    try:
        attributes[OPERATION] = operation_name(slo.get("call_type"))
        response = slo.get("response")
        if not isinstance(response, Mapping):
            response = {}
        model = response.get("model") or _field(response_obj, "model")
        if isinstance(model, str) and model:
            attributes[RESPONSE_MODEL] = repair_text(model[:_MAX_TEXT])
        response_id = response.get("id") or _field(response_obj, "id")
        if isinstance(response_id, str) and response_id:
            attributes[RESPONSE_ID] = repair_text(response_id[:_MAX_TEXT])
        reasons = [
            repair_text(str(choice.get("finish_reason"))[:_MAX_TEXT])
            for choice in _list(response.get("choices"))
            if isinstance(choice, Mapping) and choice.get("finish_reason")
        ]
        if reasons:
            attributes[RESPONSE_FINISH_REASONS] = reasons
        if slo.get("stream") is not None:
            attributes[REQUEST_STREAM] = bool(slo.get("stream"))
        parameters = slo.get("model_parameters")
        if isinstance(parameters, Mapping):
            for key, name in _REQUEST_PARAMETERS.items():
                value = parameters.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    attributes[name] = value
        address, port = _server(slo.get("api_base"))
        if address:
            attributes[SERVER_ADDRESS] = repair_text(address[:_MAX_TEXT])
            if port is not None:
                attributes[SERVER_PORT] = port
    except Exception:  # a payload of an unexpected shape: keep what was read
        pass
    return attributes


def _server(api_base: Any) -> tuple[str | None, int | None]:
    if not isinstance(api_base, str) or "://" not in api_base:
        return None, None
    try:
        parts = urlsplit(api_base)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def input_messages(messages: Any) -> list[dict[str, Any]]:
    """Chat messages (OpenAI shape, as litellm logs them) in the convention's input schema.

    `[{"role": "user", "content": "hi"}]` -> `[{"role": "user", "parts": [{"type": "text",
    "content": "hi"}]}]`; tool calls and tool results become `tool_call` and
    `tool_call_response` parts. Anything of another shape is kept as a `text` part of its
    JSON, so nothing is silently lost.
    """
    converted: list[dict[str, Any]] = []
    for message in _list(messages):
        if not isinstance(message, Mapping):
            converted.append({"role": "user", "parts": [_text(message)]})
            continue
        role = str(message.get("role") or "user")
        parts: list[dict[str, Any]] = []
        if role == "tool":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": message.get("tool_call_id"),
                    "result": message.get("content"),
                }
            )
        else:
            parts.extend(_content_parts(message.get("content")))
        parts.extend(_tool_call_parts(message.get("tool_calls")))
        converted.append({"role": role, "parts": parts})
    return converted


def output_messages(response: Any) -> list[dict[str, Any]]:
    """The choices of a chat response (a dict, as litellm logs it) in the output schema."""
    if not isinstance(response, Mapping):
        return []
    converted: list[dict[str, Any]] = []
    for choice in _list(response.get("choices")):
        if not isinstance(choice, Mapping):
            continue
        message = choice.get("message")
        message = message if isinstance(message, Mapping) else {}
        parts = list(_content_parts(message.get("content")))
        parts.extend(_tool_call_parts(message.get("tool_calls")))
        converted.append(
            {
                "role": str(message.get("role") or "assistant"),
                "parts": parts,
                "finish_reason": str(choice.get("finish_reason") or "stop"),
            }
        )
    return converted


def to_json(value: Any) -> str:
    """Compact JSON for an attribute value (spans take strings, not structures, everywhere).

    A lone surrogate or NUL becomes U+FFFD: one such string would make the whole batch of
    spans fail to encode for export.
    """
    return repair_text(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for item in _list(content) if isinstance(content, list | tuple) else [content]:
        if isinstance(item, Mapping) and item.get("type") == "text":
            parts.append({"type": "text", "content": item.get("text")})
        elif isinstance(item, Mapping) and isinstance(item.get("type"), str):
            parts.append({"type": item["type"]})  # media: the kind, not the bytes
        else:
            parts.append(_text(item))
    return parts


def _tool_call_parts(tool_calls: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in _list(tool_calls):
        if not isinstance(call, Mapping):
            continue
        function = call.get("function")
        function = function if isinstance(function, Mapping) else {}
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments)
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name"),
                "arguments": arguments,
            }
        )
    return parts


def _text(value: Any) -> dict[str, Any]:
    return {"type": "text", "content": value if isinstance(value, str) else to_json(value)}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _field(container: Any, name: str) -> Any:
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(name)
    return getattr(container, name, None)
