"""The controller: a LangChain 1.x agent (``create_agent``) whose every model and tool call
passes the auxiliary control, expressed as agent middleware.

One turn (:meth:`Controller.chat_events`):

1. the agent's input is the bounded memory of the session plus the user's message; the system
   prompt (``prompts/``, with the tool list) and the scene facts are one system message;
2. **model node**, :class:`~igpt_server.controller.middleware.RoutingMiddleware`
   (``wrap_model_call``, step 1): the request's words and pointing are parsed; when they decide
   the call and the LLM is not trusted to route (the embedded SmolLM2, or no LLM), the model is
   not called at all. Otherwise the LLM proposes a call and the words confirm or replace its
   tool. A rule plan may hold several steps ("erase the text": ``text_mask`` then ``remove``;
   "replace the background": ``invert_selection`` then ``replace``); later steps are answered
   by the rules after each tool ran;
3. **tool node**, :class:`~igpt_server.controller.middleware.RecoveryMiddleware`
   (``wrap_tool_call``, steps 2 to 4): missing artifact arguments are asked of the LLM (only
   answers naming real artifacts kept), every argument is corrected by rule, a gesture becomes
   a mask (``segment`` runs first, through the same tool node), and the tool runs through
   LangChain's tool node, whose tool functions call the one :class:`ToolRunner`. Each step
   reports ``recovered`` and ``chosen_by`` (``llm``, ``rules``, ``llm+rules``);
4. the observation goes back to the model node: an LLM that writes replies answers (tool
   errors get a bounded retry); otherwise the reply is composed from the steps.

Streaming comes from the agent's own stream (``stream_mode`` custom + messages): ``step``
events are written by the middleware, ``token`` events are the LLM's text chunks.

Replies are for people: images are named by their number in the session's strip ("image
#3"), never by path (the steps keep the paths). An unavailable tool is one sentence and what
can be done instead. The embedded LLM is not consulted by default (``consult_llm``): the rules
decide the pointing tasks at no cost, and where the words decide nothing the user is asked
back in one short question (``bench/routing.py`` records how often its own proposals were
right). Undo and redo move the session's one undo pointer (:mod:`igpt_server.store.history`);
a chat turn, however many tool steps it ran, is one undo step.

When the LLM is down or slow, pointing tasks still run through the auxiliary control (the
reply says the LLM did not answer); a request the words alone cannot route is a 503 with the
reason. A turn that fails with a 4xx changes nothing; a tool that fails leaves the session's
files and state as they were; one failed model call never bricks a session (the history the
LLM gets is plain user/assistant text that every OpenAI-compatible server accepts).
"""

from __future__ import annotations

import contextvars
import html
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from string import Template
from typing import Any, cast

from langchain.agents import create_agent
from langchain.agents.middleware import ModelRequest, ModelResponse
from langchain.agents.middleware.types import ToolCallRequest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import ToolCall
from langchain_core.outputs import ChatResult
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.config import get_stream_writer
from langgraph.errors import GraphRecursionError
from pydantic import BaseModel, ConfigDict, Field

from igpt_prompts import load_prompt
from igpt_server import logs
from igpt_server.controller.lexicon import Intent
from igpt_server.controller.llm import ChatLLM, LLMUnavailable, make_llm
from igpt_server.controller.memory import bounded_history, compatible
from igpt_server.controller.middleware import RecoveryMiddleware, RoutingMiddleware
from igpt_server.controller.parse import ParsedRequest, parse_request
from igpt_server.controller.recovery import (
    REDO_TOOL,
    SEGMENT_TOOL,
    UNDO_TOOL,
    ArtifactField,
    AuxiliaryControl,
    Correction,
    GestureModel,
    PlannedCall,
    Problem,
    explicit_artifacts,
)
from igpt_server.controller.scene import Scene
from igpt_server.errors import IgptError, InvalidInput, RetryLater
from igpt_server.perception.gestures import check_inside
from igpt_server.settings import Settings
from igpt_server.store import Artifact, ArtifactKind, SessionStore, history
from igpt_server.store.locks import current_writer, writer_identity
from igpt_server.tooling import progress
from igpt_server.tooling.registry import ToolRegistry
from igpt_server.tooling.runner import ToolCallResult, ToolRunner

log = logging.getLogger(__name__)

#: longest message accepted (characters); longer ones are a 422
MAX_MESSAGE_CHARS = 4000
#: model calls per turn (the first proposal, retries after errors, the reply)
MAX_ROUNDS = 4
#: failed tool calls per turn before the turn ends with the error (the bounded retry)
MAX_TOOL_ERRORS = 2
#: tool steps per turn (a plan, segment first, retries), whatever the LLM proposes
MAX_STEPS = 8

Event = tuple[str, dict[str, Any]]


class ChatStep(BaseModel):
    """One tool call of a turn. ``recovered``: argument names the auxiliary control filled
    in or corrected (compared with what the LLM proposed); ``chosen_by``: who picked the
    tool (``llm``, ``rules`` or ``llm+rules``: the LLM's choice confirmed by the words)."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    args: dict[str, Any]
    observation: str
    recovered: list[str] = Field(default_factory=list)
    chosen_by: str = "rules"


class ChatTurn(BaseModel):
    """The result of one turn: the reply, the artifacts it made, its tool steps."""

    model_config = ConfigDict(extra="forbid")

    reply: str
    artifacts: list[Artifact]
    steps: list[ChatStep]


@dataclass
class _Outcome:
    """What running one call gave: an observation, or a problem for the user."""

    observation: str
    ok: bool = False
    problem: str | None = None  # the call could not be made (nothing selected, tool missing...)
    error: str | None = None  # the tool ran and failed
    key: str = ""


@dataclass
class Turn:
    """The state of one turn; the agent's runtime context."""

    session_id: str
    message: str
    gesture: GestureModel | None
    parsed: ParsedRequest
    group: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    steps: list[ChatStep] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    user_recorded: bool = False
    llm_error: LLMUnavailable | None = None
    plan: list[PlannedCall] = field(default_factory=list)
    chosen_by: dict[str, str] = field(default_factory=dict)
    model_calls: int = 0
    errors: int = 0
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    reply: str | None = None
    #: the LLM's own first proposal (a tool name, "" for none; None when not consulted)
    llm_proposal: str | None = None
    result: ToolCallResult | None = None
    tool_error: IgptError | None = None
    unavailable: list[str] = field(default_factory=list)
    #: calls that must not use the gesture (later steps of a plan: the first one consumed it)
    no_pointing: set[str] = field(default_factory=set)

    def gesture_for(self, call_id: str) -> GestureModel | None:
        return None if call_id in self.no_pointing else self.gesture


#: the turn whose tool is running (set by the tool middleware around the tool node's handler)
_CURRENT_TURN: contextvars.ContextVar[Turn | None] = contextvars.ContextVar("igpt_turn", default=None)


class NoLLM(BaseChatModel):
    """The agent's model when ``llm.provider = "none"``: the routing middleware never calls it."""

    @property
    def _llm_type(self) -> str:
        return "none"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        raise LLMUnavailable("no LLM is configured (llm.provider = none)")


class Controller:
    """Turns words plus pointing into tool calls, turn after turn (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        registry: ToolRegistry,
        runner: ToolRunner,
        llm: ChatLLM | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.runner = runner
        self.aux = AuxiliaryControl(registry)
        self.vocabulary = self.aux.vocabulary
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._tools = self._langchain_tools()
        self._llm: ChatLLM | None = None
        self._agent: Any = None
        #: call the LLM even where the rules decide (to record its proposal; bench/routing.py)
        self.consult_llm: bool | None = None
        #: the LLM's own first proposal in the last turn (a tool name, "" for none, None when not
        #: consulted); read by bench/routing.py, meaningless with concurrent turns
        self.last_llm_proposal: str | None = None
        self.llm = llm

    @property
    def llm(self) -> ChatLLM | None:
        return self._llm

    @llm.setter
    def llm(self, value: ChatLLM | None) -> None:
        """Changing the LLM rebuilds the agent around the new model."""
        self._llm = value
        model = value.model if value is not None else NoLLM()
        self._agent = create_agent(
            model,
            tools=list(self._tools.values()),
            middleware=[RoutingMiddleware(self), RecoveryMiddleware(self)],
            context_schema=Turn,
        )

    def _session_lock(self, session_id: str) -> threading.Lock:
        """One turn at a time per session (turns of different sessions run side by side)."""
        with self._locks_guard:
            return self._locks.setdefault(session_id, threading.Lock())

    @classmethod
    def build(
        cls, settings: Settings, store: SessionStore, registry: ToolRegistry, runner: ToolRunner, pool: Any = None
    ) -> Controller:
        """The controller with the LLM that ``settings.llm.provider`` names (loaded lazily)."""
        return cls(settings, store, registry, runner, make_llm(settings, pool))

    def will_consult_llm(self) -> bool:
        """Whether turns call the LLM: a trusted one always, the embedded one only with
        ``consult_llm`` (see :mod:`igpt_server.controller.warmup`)."""
        if self.llm is None:
            return False
        return self.consult_llm if self.consult_llm is not None else self.llm.trusted_tools

    def warm_up(self) -> None:
        """Load the LLM now (at start-up, on a background thread), so the first turn that
        consults it does not wait; a remote endpoint needs no loading."""
        if self.llm is not None and hasattr(self.llm.model, "warm_up"):
            self.llm.model.warm_up()

    # ---- the public interface -----------------------------------------------------------

    def chat(self, session_id: str, message: str, gesture: GestureModel | None = None) -> ChatTurn:
        """Run one turn; raises the :class:`IgptError` that ends it early (4xx, 503)."""
        self.check(session_id, message, gesture)
        for event, data in self._run(session_id, message, gesture):
            if event == "reply":
                return ChatTurn.model_validate(data)
        raise RuntimeError("a turn ended without a reply")  # pragma: no cover - _run always replies

    def chat_events(self, session_id: str, message: str, gesture: GestureModel | None = None) -> Iterator[Event]:
        """The turn as events: ``step`` (a ChatStep), ``token`` ({"text"}), ``reply`` (a
        ChatTurn), ``error`` (the error shape), then ``done``. The request is checked before
        the first event, so bad input raises here (a 4xx) instead of streaming."""
        self.check(session_id, message, gesture)
        return self._events(session_id, message, gesture)

    def check(self, session_id: str, message: str, gesture: GestureModel | None) -> None:
        """Refuse what cannot be a turn: unknown session, empty or huge message, a gesture
        outside the active image or with no image."""
        self.store.require(session_id)
        if not message.strip():
            raise InvalidInput("the message is empty: say what to do, e.g. 'remove it'", code="empty_message")
        if len(message) > MAX_MESSAGE_CHARS:
            raise InvalidInput(
                f"the message has {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}. "
                "Say what to do in a sentence or two.",
                code="message_too_long",
            )
        if gesture is not None:
            state = self.store.get(session_id)
            image = state.artifact(state.active_image) if state.active_image else None
            if image is None:
                raise InvalidInput("a gesture needs an image: upload one first", code="no_image")
            check_inside(gesture, image.width or 0, image.height or 0)

    # ---- one turn -----------------------------------------------------------------------

    def _events(self, session_id: str, message: str, gesture: GestureModel | None) -> Iterator[Event]:
        try:
            yield from self._run(session_id, message, gesture)
        except IgptError as exc:
            yield "error", exc.to_json()
        except Exception:  # a bug: report it in the stream instead of cutting it
            log.exception("chat turn failed")
            rid = logs.request_id.get() or "-"
            message = f"the turn failed with an internal error (request id {rid}); the server log has the details"
            yield "error", {"error": {"code": "internal_error", "message": message, "detail": {"request_id": rid}}}
        yield "done", {}

    def _run(self, session_id: str, message: str, gesture: GestureModel | None) -> Iterator[Event]:
        with self._session_lock(session_id), writer_identity(current_writer()), self.store.writer(session_id):
            yield from self._turn(session_id, message, gesture)

    def _turn(self, session_id: str, message: str, gesture: GestureModel | None) -> Iterator[Event]:
        parsed = parse_request(message, self.vocabulary.tool_rules, self.vocabulary.values, self.vocabulary.verb_rules)
        turn = Turn(session_id, message, gesture, parsed)
        scene = Scene(self.store.get(session_id))
        try:
            explicit_artifacts(turn.parsed, scene)
        except Problem as problem:
            yield from self._finish(turn, str(problem))
            return
        yield from self._stream_agent(turn, scene)
        self.last_llm_proposal = turn.llm_proposal
        scene = Scene(self.store.get(session_id))
        reply = turn.reply or self._composed(turn, scene)
        if turn.llm_error is not None and turn.steps:
            reply += f"\n\n(The LLM did not answer: {turn.llm_error.message}. I worked from your words and pointing.)"
        yield from self._finish(turn, reply, scene)

    def _stream_agent(self, turn: Turn, scene: Scene) -> Iterator[Event]:
        """Run the agent graph and pass on its stream: custom events and the LLM's tokens."""
        bound = self.settings.llm.max_history_chars
        if self.llm is not None and self.llm.history_chars is not None:
            bound = min(bound, self.llm.history_chars)
        text = turn.message
        if turn.gesture is not None:
            text += f"\n[pointing: {turn.gesture.type} on the active image]"
        messages = [*bounded_history(scene.state.messages, bound), HumanMessage(content=text)]
        config = {"recursion_limit": 2 * (MAX_STEPS + MAX_ROUNDS) + 4}
        stream = self._agent.stream(
            {"messages": messages}, context=turn, config=config, stream_mode=["custom", "messages"]
        )
        try:
            for mode, chunk in stream:
                if mode == "custom":
                    event, data = chunk
                    yield event, data
                elif mode == "messages":
                    token = self._token(turn, chunk)
                    if token:
                        yield "token", {"text": token}
        except GraphRecursionError:
            log.warning("turn of session %s hit the step limit", turn.session_id)
            turn.reply = turn.reply or self._composed(turn)

    def _token(self, turn: Turn, chunk: Any) -> str:
        message, metadata = chunk
        if metadata.get("langgraph_node") != "model" or not isinstance(message, AIMessageChunk | AIMessage):
            return ""
        if message.name == "rules" or not self._llm_writes_replies(turn) or message.tool_calls:
            return ""
        return message.content if isinstance(message.content, str) else ""

    def _finish(self, turn: Turn, reply: str, scene: Scene | None = None) -> Iterator[Event]:
        reply = self._for_people(turn, reply, scene)
        self._record_user(turn)
        self.store.append_message(turn.session_id, "assistant", reply)
        result = ChatTurn(reply=reply, artifacts=turn.artifacts, steps=turn.steps)
        yield "reply", result.model_dump(mode="json")

    def _record_user(self, turn: Turn) -> None:
        if not turn.user_recorded:
            data = {"gesture": turn.gesture.model_dump(mode="json")} if turn.gesture is not None else {}
            self.store.append_message(turn.session_id, "user", turn.message, data)
            turn.user_recorded = True

    @staticmethod
    def _emit(event: str, data: dict[str, Any]) -> None:
        get_stream_writer()((event, data))

    # ---- the LLM ------------------------------------------------------------------------

    def _llm_gone(self, turn: Turn) -> bool:
        return self.llm is None or turn.llm_error is not None

    def _llm_writes_replies(self, turn: Turn) -> bool:
        return not self._llm_gone(turn) and self.llm is not None and self.llm.writes_replies

    def _trusted(self, turn: Turn) -> bool:
        return self.llm is not None and self.llm.trusted_tools and not self._llm_gone(turn)

    def _consulted(self, turn: Turn) -> bool:
        """Whether the first proposal is asked of the LLM: always for an LLM trusted to route;
        for the embedded one only with ``consult_llm`` (it adds nothing the rules do not)."""
        if self._llm_gone(turn):
            return False
        if self.consult_llm is not None:
            return self.consult_llm
        return self._trusted(turn)

    def _system(self, turn: Turn, scene: Scene) -> SystemMessage:
        """The system prompt with the tool list and the scene facts, as ONE system message
        (several system messages break some chat templates of local servers)."""
        llm = self.llm
        prompt = Template(load_prompt(llm.prompt if llm else "system")).substitute(tools=self._tool_list())
        return SystemMessage(content=prompt + "\n\n" + scene.context_block(turn.gesture))

    def _call_model(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse], turn: Turn
    ) -> AIMessage | None:
        """One model call through the agent's model node (None when the LLM failed: the turn
        goes on with the rules, ``turn.llm_error`` says why)."""
        assert self.llm is not None
        if turn.model_calls >= MAX_ROUNDS:
            return None
        turn.model_calls += 1
        scene = Scene(self.store.get(turn.session_id))
        tools: list[BaseTool | dict[str, Any]] = [t for n, t in self._tools.items() if n in self._callable_tools()]
        settings: dict[str, Any] = {}
        if type(self.llm.model).bind_tools is BaseChatModel.bind_tools:
            tools = []  # a model without tool support answers in text (the rules route)
        elif hasattr(self.llm.model, "artifact_choices_setting"):
            settings = {"artifact_choices": _choices(scene)}
        patched = request.override(
            system_message=self._system(turn, scene),
            messages=cast(list[Any], compatible(request.messages)),
            tools=tools,
            model_settings=settings,
        )
        try:
            response = handler(patched)
        except Exception as exc:
            failure = exc if isinstance(exc, LLMUnavailable) else self.llm.unavailable(exc)
            log.warning("LLM unavailable: %s", failure.message)
            turn.llm_error = failure
            return None
        message = next((m for m in reversed(response.result) if isinstance(m, AIMessage)), None)
        return message

    # ---- step 1: the model node -----------------------------------------------------------

    def route(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> AIMessage:
        """``wrap_model_call``: the next call of the turn, or its reply (see the module docstring)."""
        turn = cast(Turn, request.runtime.context)
        progress.check_cancelled()
        message = self._route(request, handler, turn)
        if not message.tool_calls:
            turn.reply = _text(message)
        return message

    def _route(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse], turn: Turn) -> AIMessage:
        if turn.reply is not None:
            return _final(turn.reply)
        if not isinstance(request.messages[-1], ToolMessage):
            return self._first(request, handler, turn)
        if turn.plan:
            planned = turn.plan.pop(0)
            message = self._call(turn, planned.tool, dict(planned.args), "rules")
            if not planned.pointing:
                turn.no_pointing.add(str(message.tool_calls[0]["id"]))
            return message
        if not self._llm_writes_replies(turn) or len(turn.steps) >= MAX_STEPS:
            return _final(self._composed(turn))
        ai = self._call_model(request, handler, turn)
        if ai is None:
            return _final(self._composed(turn))
        if ai.tool_calls:
            call: dict[str, Any] = dict(ai.tool_calls[0])
            if _proposal_key(call) in turn.done:  # the LLM repeats a call that already ran
                return _final(self._composed(turn))
            return self._call(turn, str(call["name"]), dict(call.get("args") or {}), "llm", call.get("id"))
        return _final(_text(ai).strip() or self._composed(turn))

    def _first(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse], turn: Turn) -> AIMessage:
        parsed, gesture = turn.parsed, turn.gesture
        ai: AIMessage | None = None
        if self._consulted(turn):
            ai = self._call_model(request, handler, turn)
        proposed: dict[str, Any] | None = dict(ai.tool_calls[0]) if ai is not None and ai.tool_calls else None
        if ai is not None or self._consulted(turn):
            turn.llm_proposal = str(proposed["name"]) if proposed else ""
        if parsed.negated and parsed.intent is not None:
            return _final(
                f"You said not to {parsed.intents[0].phrase.replace(' *', '')}: tell me what to do instead, "
                "for example 'remove it' or 'cut it out'."
            )
        choice = self.aux.identify(
            proposed["name"] if proposed else None, parsed, gesture, trust_llm=self._trusted(turn)
        )
        if choice.tool is None:
            return _final(self._no_tool_reply(turn, ai, proposed))
        scene = Scene(self.store.get(turn.session_id))
        try:
            plan = self.aux.plan(choice.tool, parsed, gesture, scene)
        except Problem as problem:
            return _final(str(problem))
        first, turn.plan = plan[0], plan[1:]
        args = dict(proposed.get("args") or {}) if proposed and proposed["name"] == first.tool else {}
        args.update(first.args)
        if proposed is not None and proposed["name"] == first.tool:
            chosen = "llm+rules" if choice.source in ("llm+lexicon", "lexicon") or len(plan) > 1 else "llm"
            return self._call(turn, first.tool, args, chosen, proposed.get("id"))
        return self._call(turn, first.tool, args, "rules")

    def _call(
        self, turn: Turn, tool: str, args: dict[str, Any], chosen_by: str, call_id: str | None = None
    ) -> AIMessage:
        """An AIMessage with one tool call (non-empty content: some servers refuse null)."""
        call_id = call_id or f"call_{uuid.uuid4().hex[:12]}"
        turn.chosen_by[call_id] = chosen_by
        call = {"name": tool, "args": args, "id": call_id, "type": "tool_call"}
        return AIMessage(content=f"Calling {tool}.", tool_calls=[call], name="rules")  # type: ignore[list-item]

    def _no_tool_reply(self, turn: Turn, ai: AIMessage | None, proposed: dict[str, Any] | None) -> str:
        if proposed is not None and proposed["name"] not in self._callable_tools():
            return (
                f"There is no tool named '{_clip(str(proposed['name']), 40)}' here. "
                "Point at the image and say what to do, for example 'remove it' or 'cut it out'."
            )
        if ai is not None and self._llm_writes_replies(turn) and _text(ai).strip():
            return _text(ai)
        if turn.llm_error is not None:
            raise turn.llm_error
        return self._help(turn)

    def _help(self, turn: Turn) -> str:
        """One short question instead of a guess."""
        if turn.parsed.intent is None and not turn.parsed.words:
            return "What should I do with the image?"
        return (
            "What should I do? Point at something and say, for example, 'remove it', 'cut it out', "
            "'blur the background', 'crop to it', 'what does it say' or 'undo'."
        )

    # ---- steps 2 to 4: the tool node -------------------------------------------------------

    def recover_and_run(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Any]
    ) -> ToolMessage:
        """``wrap_tool_call``: ask, correct, run, report one call (see the module docstring)."""
        turn = cast(Turn, request.runtime.context)
        call: dict[str, Any] = dict(request.tool_call)
        progress.check_cancelled()
        outcome = self._execute(turn, call, request, handler)
        if outcome.problem is not None:
            turn.reply, turn.plan = outcome.problem, []
        elif outcome.ok:
            turn.done.add(_proposal_key(call))
        else:
            turn.errors += 1
            repeated = outcome.key in turn.failed
            turn.failed.add(outcome.key)
            # a weak LLM's retry is not trusted and the rules would repeat their own call, so
            # only an LLM that writes replies gets the error back to retry
            if turn.errors > MAX_TOOL_ERRORS or repeated or not self._llm_writes_replies(turn):
                turn.reply, turn.plan = self._error_reply(str(call["name"]), outcome), []
        status = "success" if outcome.ok else "error"
        return ToolMessage(content=outcome.observation, tool_call_id=call["id"], name=call["name"], status=status)

    def _execute(
        self, turn: Turn, call: dict[str, Any], request: ToolCallRequest, handler: Callable[..., Any]
    ) -> _Outcome:
        name = str(call["name"])
        chosen_by = turn.chosen_by.get(str(call.get("id")), "llm")
        proposed = dict(call.get("args") or {})
        if name in (UNDO_TOOL, REDO_TOOL):
            return self._invoke(turn, request, handler, name, {}, [], chosen_by)
        if name not in self.registry.names():
            message = f"there is no tool named '{name}'; the tools are {', '.join(self._callable_tools())}"
            return _Outcome(observation=f"Error: {message}", error=message, key=f"unknown:{name}")
        scene = Scene(self.store.get(turn.session_id))
        gesture = turn.gesture_for(str(call.get("id")))
        args = dict(proposed)
        missing = self.aux.missing_artifacts(name, args, scene)
        if gesture is not None:  # the gesture will make the mask: nothing to ask for
            missing = [f for f in missing if ArtifactKind.mask not in f.kinds]
        if missing and self._trusted(turn) and self.llm is not None and self.llm.asked_for_arguments:
            args.update(self._ask_arguments(turn, name, missing, scene))
        correction = self._correct(turn, name, args, scene, request, handler, gesture)
        order = list(self.registry.get(name).args_model.model_fields)
        correction.recovered = [n for n in order if n in correction.args and proposed.get(n) != correction.args[n]]
        if correction.problem is not None:
            return _Outcome(observation=correction.problem, problem=correction.problem)
        info = self.registry.info(name)
        if not info.available:
            turn.unavailable.append(name)
            step = ChatStep(
                tool=name,
                args=correction.args,
                observation=f"not run: {info.reason}",
                recovered=correction.recovered,
                chosen_by=chosen_by,
            )
            turn.steps.append(step)
            self._emit("step", step.model_dump(mode="json"))
            problem = self._unavailable_reply(name)
            return _Outcome(observation=problem, problem=problem)
        outcome = self._invoke(
            turn, request, handler, name, correction.args, correction.recovered, chosen_by, correction.state_before
        )
        outcome.key = _proposal_key(call)
        return outcome

    def _correct(
        self,
        turn: Turn,
        name: str,
        args: dict[str, Any],
        scene: Scene,
        request: ToolCallRequest,
        handler: Callable[..., Any],
        gesture: GestureModel | None,
    ) -> Correction:
        """Step 3, running the segment (or grounding) step a gesture (or a name) needs first."""
        history_text = " ".join(m.content for m in scene.state.messages[-6:] if m.role == "user")
        correction = self.aux.correct(name, args, turn.parsed, scene, gesture, history_text=history_text)
        correction.state_before = _snapshot(scene)
        pre = correction.segment_first
        pre_tool = SEGMENT_TOOL
        if pre is None and correction.ground_first is not None:
            pre_tool = str(correction.ground_first["tool"])
            grounding = self.aux.correct(pre_tool, {}, turn.parsed, scene, None, history_text=history_text)
            if grounding.problem is not None:
                correction.problem = grounding.problem
                return correction
            pre = grounding.args
        if pre is None:
            return correction
        if not self.registry.info(pre_tool).available:
            correction.problem = (
                f"I can't turn your pointing into a selection on this server (the {pre_tool} tool is "
                "unavailable); upload a mask, or an administrator can enable it (see /api/tools)."
            )
            return correction
        outcome = self._invoke(turn, request, handler, pre_tool, pre, sorted(pre), "rules", _snapshot(scene))
        if not outcome.ok:
            correction.problem = f"Turning your pointing into a selection failed: {outcome.error}"
            return correction
        mask = next((a.path for a in reversed(turn.artifacts) if a.kind is ArtifactKind.mask), None)
        if mask is None:
            correction.problem = "I found nothing to select there; point again."
            return correction
        scene = Scene(self.store.get(turn.session_id))
        correction = self.aux.correct(
            name, args, turn.parsed, scene, gesture, gesture_mask=mask, history_text=history_text
        )
        correction.state_before = _snapshot(scene)
        return correction

    def _ask_arguments(self, turn: Turn, tool: str, missing: list[ArtifactField], scene: Scene) -> dict[str, Any]:
        """Step 2: "What are the image_path and mask_path of the '...' API?" Only answers that
        name real artifacts of this session of the right kind are kept."""
        assert self.llm is not None
        if turn.model_calls >= MAX_ROUNDS:
            return {}
        choices = _choices(scene)
        properties = {
            f.name: {"enum": paths}
            for f in missing
            if (paths := [p for kind in f.kinds for p in choices.get(kind, [])])
        }
        if not properties:
            return {}
        names = list(properties)
        example = ", ".join(f'"{n}": "{properties[n]["enum"][-1]}"' for n in names)
        question = Template(load_prompt("recovery")).substitute(
            fields=" and ".join(names),
            purpose=_first_sentence(self.registry.info(tool).description),
            request=_clip(turn.message, 300),
            example=example,
        )
        messages: list[BaseMessage] = [
            SystemMessage(content=scene.context_block(turn.gesture)),
            HumanMessage(content=question),
        ]
        schema = {"type": "object", "properties": properties, "required": names, "additionalProperties": False}
        turn.model_calls += 1
        try:
            answer = self.llm.ask_json(messages, schema) or {}
        except LLMUnavailable as exc:
            turn.llm_error = exc
            return {}
        return self.aux.accept_answer(tool, answer, scene)

    def _invoke(
        self,
        turn: Turn,
        request: ToolCallRequest,
        handler: Callable[..., Any],
        name: str,
        args: dict[str, Any],
        recovered: list[str],
        chosen_by: str,
        before: history.Snapshot | None = None,
    ) -> _Outcome:
        """Step 4: run the tool through the agent's tool node, record the step, report it.
        ``before``: the session's active image and selection now, when the caller has them."""
        key = f"{name}:{json.dumps(args, sort_keys=True, default=str)}"
        before = before or history.snapshot(self.store, turn.session_id)
        call = cast(ToolCall, {**request.tool_call, "name": name, "args": args})
        turn.result, turn.tool_error = None, None
        token = _CURRENT_TURN.set(turn)
        try:
            handler(request.override(tool_call=call, tool=self._tools[name]))
        finally:
            _CURRENT_TURN.reset(token)
        if name in (UNDO_TOOL, REDO_TOOL):
            return self._after_undo(turn, name, chosen_by)
        if isinstance(turn.tool_error, RetryLater):
            # the server is full (a tool's queue, a device's memory), the request is not wrong:
            # the turn ends as a 503 with Retry-After; the steps before it stay recorded
            raise turn.tool_error
        if turn.tool_error is not None or turn.result is None:
            message = turn.tool_error.message if turn.tool_error is not None else "the tool gave no result"
            observation = f"Error from {name}: {message}"
            step = ChatStep(tool=name, args=args, observation=observation, recovered=recovered, chosen_by=chosen_by)
            turn.steps.append(step)
            self._emit("step", step.model_dump(mode="json"))
            return _Outcome(observation=observation, error=message, key=key)
        result = turn.result
        paths = [a.path for a in result.artifacts]
        observation = result.text + (f" New files: {', '.join(paths)}." if paths else "")
        step = ChatStep(tool=name, args=args, observation=observation, recovered=recovered, chosen_by=chosen_by)
        self._record_user(turn)
        record = history.ToolStep(
            group=turn.group,
            before=before,
            tool=name,
            args=args,
            observation=observation,
            recovered=recovered,
            chosen_by=chosen_by,
            artifacts=paths,
            data=_small(result.data),
        )
        self.store.record(turn.session_id, record)
        turn.steps.append(step)
        turn.artifacts.extend(result.artifacts)
        self._emit("step", step.model_dump(mode="json"))
        return _Outcome(observation=observation, ok=True, key=key)

    def _after_undo(self, turn: Turn, name: str, chosen_by: str) -> _Outcome:
        text = turn.result.text if turn.result is not None else ""
        if turn.result is None or not turn.result.data.get("moved"):
            return _Outcome(observation=text, problem=text)
        step = ChatStep(tool=name, args={}, observation=text, recovered=[], chosen_by=chosen_by)
        turn.steps.append(step)
        self._emit("step", step.model_dump(mode="json"))
        return _Outcome(observation=text, ok=True, key=f"{name}:{len(turn.steps)}")

    # ---- the tools as LangChain tools -----------------------------------------------------

    def _callable_tools(self) -> list[str]:
        return [*self.registry.available_names(), UNDO_TOOL, REDO_TOOL]

    def _tool_list(self) -> str:
        lines = []
        for name in self._callable_tools():
            description = self._tools[name].description
            lines.append(f"- {name}: {_first_sentence(description)}")
        return "\n".join(lines)

    def _langchain_tools(self) -> dict[str, BaseTool]:
        """Every registered tool (and undo, redo) as a LangChain structured tool whose function
        runs it through the runner; the tool node calls them, the middleware around it."""
        tools: dict[str, BaseTool] = {}
        for name in self.registry.names():
            tool = self.registry.get(name)
            tools[name] = StructuredTool.from_function(
                func=self._runner_function(name), name=name, description=tool.description, args_schema=tool.args_model
            )
        tools[UNDO_TOOL] = StructuredTool.from_function(
            func=self._pointer_function(UNDO_TOOL), name=UNDO_TOOL, description=UNDO_DESCRIPTION, args_schema=NoArgs
        )
        tools[REDO_TOOL] = StructuredTool.from_function(
            func=self._pointer_function(REDO_TOOL), name=REDO_TOOL, description=REDO_DESCRIPTION, args_schema=NoArgs
        )
        return tools

    def _runner_function(self, name: str) -> Callable[..., str]:
        def run(**kwargs: Any) -> str:
            turn = _CURRENT_TURN.get()
            if turn is None:
                raise RuntimeError(f"tool {name} runs only inside a chat turn")
            raw = {k: _plain(v) for k, v in kwargs.items()}
            try:
                turn.result = self.runner.call(turn.session_id, name, raw, record=False)
            except IgptError as exc:
                turn.tool_error = exc
                return f"Error from {name}: {exc.message}"
            return turn.result.text

        return run

    def _pointer_function(self, name: str) -> Callable[..., str]:
        def run() -> str:
            turn = _CURRENT_TURN.get()
            if turn is None:
                raise RuntimeError(f"{name} runs only inside a chat turn")
            self._record_user(turn)
            moved = history.undo if name == UNDO_TOOL else history.redo
            record = moved(self.store, turn.session_id)
            scene = Scene(self.store.get(turn.session_id))
            if record is None:
                text = "There is nothing to undo yet." if name == UNDO_TOOL else "There is nothing to redo."
            else:
                verb = "Undid the last step" if name == UNDO_TOOL else "Redid the step"
                where = scene.name_of(record.after.active_image if record.after else None)
                text = f"{verb}: {where} is active again" + (
                    " with its selection." if record.after and record.after.active_mask else "."
                )
            turn.result = ToolCallResult(
                tool=name, backend="history", text=text, artifacts=[], data={"moved": record is not None}
            )
            return text

        return run

    # ---- replies ------------------------------------------------------------------------

    def _composed(self, turn: Turn, scene: Scene | None = None) -> str:
        """A reply from the steps (for LLMs that do not write replies)."""
        done = [s for s in turn.steps if not s.observation.startswith(("not run", "Error from"))]
        if not done:
            return self._help(turn)
        scene = scene or Scene(self.store.get(turn.session_id))
        shown = [s for s in done if s.tool != SEGMENT_TOOL] or done
        sentences = [_sentence(scene.humane(_strip_files(s.observation))) for s in shown]
        images = [a.path for a in turn.artifacts if a.kind is ArtifactKind.image]
        if images and images[-1] == scene.state.active_image:
            sentences.append(f"The result is {scene.name_of(images[-1])}.")
        materials = [a.path for a in turn.artifacts if a.kind is ArtifactKind.material]
        if materials:
            sentences.append(
                f"It is kept as {scene.name_of(materials[-1])} (a transparent PNG); the photo is unchanged."
            )
        return " ".join(sentences)

    def _for_people(self, turn: Turn, reply: str, scene: Scene | None = None) -> str:
        """No artifact paths, no HTML entities: images by number, masks as the selection."""
        scene = scene or Scene(self.store.get(turn.session_id))
        return scene.humane(html.unescape(reply)).strip() or self._help(turn)

    def _unavailable_reply(self, tool: str) -> str:
        """One sentence: what cannot be done here, what can, and who can change it."""
        instead = [t for t in _ALTERNATIVES.get(tool, ()) if t in self.registry.available_names()]
        offer = f"I can {' or '.join(_OFFERS[t] for t in instead)}, or an" if instead else "An"
        what = _CANNOT.get(tool, f"use the {tool} tool")
        return f"I can't {what} on this server; {offer} administrator can enable it (see /api/tools)."

    @staticmethod
    def _error_reply(tool: str, outcome: _Outcome) -> str:
        return f"The {tool} tool could not do it: {outcome.error}"


class NoArgs(BaseModel):
    """Undo and redo take no arguments."""

    model_config = ConfigDict(extra="forbid")


UndoArgs = NoArgs
UNDO_DESCRIPTION = "Undo the last step: make the previous image and selection active again. No arguments."
REDO_DESCRIPTION = "Redo the step undone last: its image and selection become active again. No arguments."

#: what people can do instead when a tool is unavailable, and how to say it
_ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "replace": ("remove", "extract"),
    "generate": ("sketch",),
    "vqa": ("ocr",),
    "caption": ("ocr",),
    "ground": ("segment",),
    "ground_and_segment": ("segment",),
    "segment_everything": ("segment",),
}
_OFFERS = {
    "remove": "remove it",
    "extract": "cut it out",
    "sketch": "keep your strokes as a sketch",
    "ocr": "read the text in it",
    "segment": "select what you click",
}
_CANNOT = {
    "replace": "replace objects",
    "generate": "generate pictures",
    "vqa": "answer questions about images",
    "caption": "describe images",
    "ground": "find objects by name",
    "ground_and_segment": "find objects by name (click the object instead)",
    "segment_everything": "select every object at once",
}


def _snapshot(scene: Scene) -> history.Snapshot:
    return history.Snapshot(active_image=scene.state.active_image, active_mask=scene.state.active_mask)


def _final(text: str) -> AIMessage:
    return AIMessage(content=text, name="rules")


def _plain(value: Any) -> Any:
    """Validated tool arguments back to JSON values (gestures, lists of models)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _strip_files(text: str) -> str:
    return text.split(" New files:")[0]


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?", ":")) else text + "."


def _proposal_key(call: dict[str, Any]) -> str:
    """A call as proposed (tool and raw args), to spot repeated proposals."""
    return f"{call.get('name')}:{json.dumps(call.get('args') or {}, sort_keys=True, default=str)}"


def _choices(scene: Scene) -> dict[ArtifactKind, list[str]]:
    """The session's artifact paths by kind (newest last), for constrained answers."""
    choices: dict[ArtifactKind, list[str]] = {}
    for artifact in scene.state.artifacts[-24:]:
        choices.setdefault(artifact.kind, []).append(artifact.path)
    return choices


def _first_sentence(text: str) -> str:
    head = text.split(". ")[0].strip()
    return head if head.endswith(".") else head + "."


def _text(message: AIMessage) -> str:
    return message.text if isinstance(message.text, str) else str(message.content)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _small(data: dict[str, Any], limit: int = 4000) -> dict[str, Any]:
    """The tool's JSON data for the history, or a note when it is too large to keep."""
    encoded = json.dumps(data, default=str)
    return data if len(encoded) <= limit else {"truncated": True, "keys": sorted(data)}


__all__ = ["ChatStep", "ChatTurn", "Controller", "Intent", "Turn"]
