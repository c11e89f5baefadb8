"""LLM providers behind one setting, ``settings.llm.provider``.

* ``embedded`` (default, no key): SmolLM2-135M-Instruct run by llama-cpp-python
  (:mod:`igpt_server.controller.embedded`); tool calls constrained by grammar. It does not
  write the replies: the controller composes them from the tools' observations.
* ``openai``: langchain-openai's ``ChatOpenAI`` with ``base_url``, ``model``, ``api_key``
  and a bounded ``timeout`` and ``max_retries`` (OpenAI, vLLM, Ollama, llama.cpp's server),
  so a down or slow endpoint fails within about ``timeout_s * 2``.
* ``none``: no LLM; the auxiliary control alone routes requests.
* any LangChain chat model, e.g. the fake chat models of
  ``langchain_core.language_models.fake_chat_models`` with scripted replies (tests):
  :meth:`ChatLLM.of`.

Every failure of the model (connection refused, timeout, HTTP error, a broken answer) is a
:class:`LLMUnavailable` (503) whose message names the endpoint and the cause.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from igpt_server.errors import ServiceUnavailable
from igpt_server.settings import LLMSettings, Settings
from igpt_server.store import ArtifactKind

#: retries of the OpenAI client after the first attempt (bounded time when the endpoint is down)
OPENAI_MAX_RETRIES = 1


class LLMUnavailable(ServiceUnavailable):
    """The LLM could not answer (down, slow, misconfigured or broken)."""

    code = "llm_unavailable"


@dataclass
class ChatLLM:
    """A LangChain chat model and how the controller uses it.

    ``writes_replies``: the model writes the final answer after the tools ran (remote and
    scripted models); otherwise the controller composes it from the observations.
    ``trusted_tools``: the model's choice of tool stands when the words name no other tool;
    otherwise (a weak model) it only confirms the tool the words name.
    ``prompt``: the name of the system prompt in ``prompts/``.
    """

    model: BaseChatModel
    label: str
    writes_replies: bool = True
    trusted_tools: bool = True
    prompt: str = "system"
    history_chars: int | None = None
    #: step 2: missing artifact arguments are asked of the model (the rules fill them otherwise)
    asked_for_arguments: bool = True

    @classmethod
    def of(cls, model: BaseChatModel, label: str | None = None) -> ChatLLM:
        """Wrap any chat model (a fake one with scripted replies in tests)."""
        return cls(model=model, label=label or type(model).__name__)

    def with_tools(self, tools: Sequence[BaseTool], choices: dict[ArtifactKind, list[str]]) -> Runnable[Any, Any]:
        """The model with ``tools`` bound; a model without tool support is used as it is."""
        try:
            return self.model.bind_tools(list(tools))
        except NotImplementedError:
            return self.model

    def propose(
        self, messages: list[BaseMessage], tools: Sequence[BaseTool], choices: dict[ArtifactKind, list[str]]
    ) -> Generator[str, None, AIMessage]:
        """Ask for the next step; yields content tokens as they stream, returns the message."""
        runnable = self.with_tools(tools, choices)
        total: Any = None
        try:
            for chunk in runnable.stream(messages):
                if isinstance(chunk, AIMessageChunk | AIMessage) and isinstance(chunk.content, str) and chunk.content:
                    yield chunk.content
                total = chunk if total is None else total + chunk
        except Exception as exc:
            raise self.unavailable(exc) from exc
        return _as_message(total)

    def ask_json(self, messages: list[BaseMessage], schema: dict[str, Any]) -> dict[str, Any] | None:
        """One JSON object answering ``messages`` (None when the answer holds none)."""
        try:
            answer = self.model.invoke(messages)
        except Exception as exc:
            raise self.unavailable(exc) from exc
        return first_json_object(str(answer.content))

    def unavailable(self, exc: BaseException) -> LLMUnavailable:
        cause = f"{type(exc).__name__}: {exc}".strip()
        return LLMUnavailable(
            f"the LLM ({self.label}) did not answer: {cause[:300]}",
            detail={"llm": self.label, "error": type(exc).__name__},
        )


@dataclass
class EmbeddedLLM(ChatLLM):
    """The embedded model: grammar-constrained tool calls, JSON answers; no free replies."""

    writes_replies: bool = False
    trusted_tools: bool = False
    prompt: str = "embedded"

    history_chars: int | None = 1200
    #: SmolLM2-135M answers the argument question right less often than the rules fill it
    asked_for_arguments: bool = False

    def with_tools(self, tools: Sequence[BaseTool], choices: dict[ArtifactKind, list[str]]) -> Runnable[Any, Any]:
        from igpt_server.controller.embedded import SmolLMChat

        assert isinstance(self.model, SmolLMChat)
        return self.model.bind_tools(list(tools), artifact_choices=choices)

    def ask_json(self, messages: list[BaseMessage], schema: dict[str, Any]) -> dict[str, Any] | None:
        try:
            answer = self.model.invoke(messages, json_schema=schema)
        except Exception as exc:
            raise self.unavailable(exc) from exc
        return first_json_object(str(answer.content))


def _as_message(total: Any) -> AIMessage:
    if total is None:
        return AIMessage(content="")
    if isinstance(total, AIMessageChunk):
        return AIMessage(content=total.content, tool_calls=total.tool_calls, id=total.id)
    if isinstance(total, AIMessage):
        return total
    return AIMessage(content=str(getattr(total, "content", total)))


_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (bare, or in a ```json fence), or None."""
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in [i for i, ch in enumerate(candidate) if ch == "{"][:20]:
            try:
                value, _ = decoder.raw_decode(candidate[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def make_llm(settings: Settings, pool: Any = None) -> ChatLLM | None:
    """The LLM that ``settings.llm.provider`` names (None for ``none``). Nothing is loaded
    or contacted here: the embedded model loads on first use, the endpoint on first call."""
    config = settings.llm
    if config.provider == "none":
        return None
    if config.provider == "openai":
        return _openai(config)
    from igpt_server.controller.embedded import SmolLMChat, default_model_path

    path = config.embedded_model_path or default_model_path()
    model = SmolLMChat(model_path=path or "SmolLM2-135M-Instruct.Q4_1.gguf", pool=pool)
    return EmbeddedLLM(model=model, label=f"embedded SmolLM2-135M-Instruct ({path})")


def _openai(config: LLMSettings) -> ChatLLM:
    from langchain_openai import ChatOpenAI

    key = config.api_key.get_secret_value() if config.api_key is not None else "no-key"
    model = ChatOpenAI(
        model=config.model,
        base_url=config.base_url,
        api_key=key,  # type: ignore[arg-type]
        timeout=config.timeout_s,
        max_retries=OPENAI_MAX_RETRIES,
        temperature=0,
    )
    where = config.base_url or "https://api.openai.com/v1"
    return ChatLLM(model=model, label=f"openai-compatible {config.model} at {where}")
