"""Conversation memory: a session's history as LangChain messages, bounded by characters.

The store keeps every message of a session (user turns, replies, tool steps, events). The
prompt gets the newest of them, converted to LangChain messages (a tool step becomes an
``AIMessage`` with its tool call followed by the ``ToolMessage`` with its observation),
trimmed with ``langchain_core.messages.trim_messages`` to at most ``max_chars`` characters
(the length of contents and tool arguments: no tokenizer is needed, and tiktoken, which
would download its encoding, is never called). Events (uploads, gestures) are scene facts:
they go to the context block, not into the turns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage, trim_messages

from igpt_server.store import Message


def message_chars(message: BaseMessage) -> int:
    """Characters a message costs in the prompt: its text plus its tool calls' JSON."""
    size = len(message.text) if isinstance(message.text, str) else len(str(message.content))
    if isinstance(message, AIMessage):
        size += sum(len(call["name"]) + len(json.dumps(call["args"])) for call in message.tool_calls)
    return size


def count_chars(messages: list[BaseMessage]) -> int:
    return sum(message_chars(m) for m in messages)


def to_langchain(history: Sequence[Message]) -> list[BaseMessage]:
    """Store messages as LangChain messages (events are left out)."""
    converted: list[BaseMessage] = []
    for message in history:
        if message.role == "user":
            converted.append(HumanMessage(content=message.content))
        elif message.role == "assistant":
            converted.append(AIMessage(content=message.content))
        elif message.role == "tool":
            call_id = f"call_{message.seq}"
            name = str(message.data.get("tool") or "tool")
            args = message.data.get("args") or {}
            converted.append(AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}]))
            observation = str(message.data.get("observation") or message.content)
            converted.append(ToolMessage(content=observation, tool_call_id=call_id, name=name))
    return converted


def bounded_history(history: Sequence[Message], max_chars: int) -> list[BaseMessage]:
    """The newest turns of ``history`` within ``max_chars`` characters, starting on a user
    turn (a tool result is never separated from its call)."""
    messages = to_langchain(history)
    if not messages:
        return []
    return trim_messages(
        messages,
        max_tokens=max_chars,
        token_counter=count_chars,
        strategy="last",
        start_on="human",
        allow_partial=False,
    )
