"""Conversation memory: a session's history as LangChain messages, bounded by characters,
in a shape every OpenAI-compatible server accepts.

The store keeps every message of a session (user turns, replies, tool steps, events). The
prompt gets the newest of them as plain **user / assistant** text turns: a past turn's tool
steps are folded into its assistant message ("[remove: Removed the selected object. New
files: image/...]"), so no past ``tool_calls`` or ``tool`` messages are sent. OpenAI, vLLM,
Ollama and llama.cpp's servers differ on what they accept in history (llama-cpp-python's
server refuses an assistant message whose content is null beside ``tool_calls``; some chat
templates require strict user/assistant alternation); plain alternating text is accepted by
all of them. Within a turn the agent's own tool calls are sent as calls, with non-empty
content (:func:`compatible`).

Trimming uses ``langchain_core.messages.trim_messages`` at most ``max_chars`` characters
(no tokenizer: tiktoken, which would download its encoding, is never called). Events
(uploads, gestures, captions) are scene facts: they go to the context block, not the turns.
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
    """Store messages as alternating Human/AI text messages (tool steps folded into the
    assistant's text, events left out, consecutive messages of one side joined)."""
    turns: list[tuple[str, str]] = []
    for message in history:
        if message.role == "user":
            side, text = "user", message.content
        elif message.role == "assistant":
            side, text = "assistant", message.content
        elif message.role == "tool":
            name = str(message.data.get("tool") or "tool")
            observation = str(message.data.get("observation") or message.content)
            side, text = "assistant", f"[{name}: {observation}]"
        else:
            continue
        if turns and turns[-1][0] == side:
            turns[-1] = (side, turns[-1][1] + "\n" + text)
        else:
            turns.append((side, text))
    return [HumanMessage(content=text) if side == "user" else AIMessage(content=text) for side, text in turns]


def bounded_history(history: Sequence[Message], max_chars: int) -> list[BaseMessage]:
    """The newest turns of ``history`` within ``max_chars`` characters, starting on a user
    turn and ending on an assistant turn (the new message follows)."""
    messages = to_langchain(history)
    while messages and isinstance(messages[-1], HumanMessage):
        messages.pop()  # a turn that got no reply (it failed): never two user turns in a row
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


def compatible(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """``messages`` with every assistant tool call carrying non-empty content (langchain-openai
    sends empty content as null, which llama-cpp-python's server refuses) and every tool
    result naming its tool."""
    out: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls and not message.text.strip():
            names = ", ".join(call["name"] for call in message.tool_calls)
            message = message.model_copy(update={"content": f"Calling {names}."})
        elif isinstance(message, ToolMessage) and not message.text.strip():
            message = message.model_copy(update={"content": "(no output)"})
        out.append(message)
    return out
