"""The controller: a LangChain agent whose every tool call passes the auxiliary control.

One turn (:meth:`Controller.chat_events`):

1. the prompt is built from ``prompts/`` (system prompt with the tool list), the scene facts
   as one context block, the bounded memory and the user's message;
2. the LLM proposes the next step (a tool call or an answer); the tools are LangChain
   ``StructuredTool``\\ s built from the registry (name, description, args model);
3. the auxiliary control (:mod:`igpt_server.controller.recovery`) confirms or replaces the
   tool from the request's words, asks the LLM for missing artifact arguments, corrects every
   argument by rule, turns a gesture into a mask (running ``segment`` first) and invokes the
   tool through ``services.runner``; ``recovered`` names the arguments it filled or fixed;
4. the observation goes back to the LLM (tool errors too, with a bounded number of retries)
   until it answers; an LLM that does not write replies (the embedded one) or none at all
   gets a reply composed from the observations, and a tool error ends its turn with the
   error's message (its retry would only repeat the auxiliary control's call).


Undo is the controller's own tool (``undo``): it restores the active image and selection
that the last state-changing step replaced, from the ``before`` record every step keeps
(artifacts are never deleted; the undone ones stay in the session's file list).

When the LLM is down or slow, pointing tasks still run through the auxiliary control (the
reply says the LLM did not answer); a request the words alone cannot route is a 503 with the
reason. A turn that fails with a 4xx changes nothing; a tool that fails leaves the session's
files and state as they were.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from string import Template
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from igpt_prompts import load_prompt
from igpt_server.controller.lexicon import Intent
from igpt_server.controller.llm import ChatLLM, LLMUnavailable, make_llm
from igpt_server.controller.memory import bounded_history
from igpt_server.controller.parse import ParsedRequest, parse_request
from igpt_server.controller.recovery import (
    SEGMENT_TOOL,
    UNDO_TOOL,
    ArtifactField,
    AuxiliaryControl,
    Correction,
    GestureModel,
    Problem,
    explicit_artifacts,
)
from igpt_server.controller.scene import Scene
from igpt_server.errors import IgptError, InvalidInput
from igpt_server.perception.gestures import check_inside
from igpt_server.settings import Settings
from igpt_server.store import Artifact, ArtifactKind, SessionStore
from igpt_server.tooling.registry import ToolRegistry
from igpt_server.tooling.runner import ToolRunner

log = logging.getLogger(__name__)

#: longest message accepted (characters); longer ones are a 422
MAX_MESSAGE_CHARS = 4000
#: LLM rounds per turn (each may call one tool)
MAX_ROUNDS = 4
#: failed tool calls per turn before the turn ends with the error (the bounded retry)
MAX_TOOL_ERRORS = 2

Event = tuple[str, dict[str, Any]]


class ChatStep(BaseModel):
    """One tool call of a turn. ``recovered``: argument names the auxiliary control filled
    in or corrected (compared with what the LLM proposed)."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    args: dict[str, Any]
    observation: str
    recovered: list[str] = Field(default_factory=list)


class ChatTurn(BaseModel):
    """The result of one turn: the reply, the artifacts it made, its tool steps."""

    model_config = ConfigDict(extra="forbid")

    reply: str
    artifacts: list[Artifact]
    steps: list[ChatStep]


@dataclass
class _Outcome:
    """What running one proposed call gave: an observation, or a problem for the user."""

    observation: str
    ok: bool = False
    problem: str | None = None  # the call could not be made (nothing selected, tool missing...)
    error: str | None = None  # the tool ran and failed
    key: str = ""


@dataclass
class _Turn:
    session_id: str
    message: str
    gesture: GestureModel | None
    parsed: ParsedRequest
    steps: list[ChatStep] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    user_recorded: bool = False
    llm_error: LLMUnavailable | None = None


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
        self.llm = llm
        self.aux = AuxiliaryControl(registry)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

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
        except Exception as exc:  # a bug: report it in the stream instead of cutting it
            log.exception("chat turn failed")
            error = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}", "detail": None}
            yield "error", {"error": error}
        yield "done", {}

    def _run(self, session_id: str, message: str, gesture: GestureModel | None) -> Iterator[Event]:
        with self._session_lock(session_id):
            yield from self._turn(session_id, message, gesture)

    def _turn(self, session_id: str, message: str, gesture: GestureModel | None) -> Iterator[Event]:
        turn = _Turn(session_id, message, gesture, parse_request(message))
        scene = Scene(self.store.get(session_id))
        try:
            explicit_artifacts(turn.parsed, scene)
        except Problem as problem:
            yield from self._finish(turn, str(problem))
            return
        reply = yield from self._agent_loop(turn, scene)
        if turn.llm_error is not None and turn.steps:
            reply += (
                f"\n\n(The LLM did not answer: {turn.llm_error.message}. "
                "The auxiliary control handled this request from your words and pointing.)"
            )
        yield from self._finish(turn, reply)

    def _finish(self, turn: _Turn, reply: str) -> Iterator[Event]:
        self._record_user(turn)
        self.store.append_message(turn.session_id, "assistant", reply)
        result = ChatTurn(reply=reply, artifacts=turn.artifacts, steps=turn.steps)
        yield "reply", result.model_dump(mode="json")

    def _record_user(self, turn: _Turn) -> None:
        if not turn.user_recorded:
            data = {"gesture": turn.gesture.model_dump(mode="json")} if turn.gesture is not None else {}
            self.store.append_message(turn.session_id, "user", turn.message, data)
            turn.user_recorded = True

    def _agent_loop(self, turn: _Turn, scene: Scene) -> Generator[Event, None, str]:
        messages = self._prompt(turn, scene)
        tools = self._langchain_tools(turn.session_id)
        errors = 0
        done: set[str] = set()
        failed: set[str] = set()
        last_ai: AIMessage | None = None
        for round_index in range(MAX_ROUNDS):
            ai = yield from self._propose(turn, messages, tools, scene)
            last_ai = ai
            calls: list[dict[str, Any]] = [dict(c) for c in ai.tool_calls] if ai is not None else []
            call: dict[str, Any] | None
            if round_index == 0:
                call = self._first_call(turn, calls)
                if call is None:
                    return self._no_tool_reply(turn, ai, calls)
            elif not calls:
                return self._final_text(turn, ai)
            else:
                call = calls[0]
            assert call is not None
            if _proposal_key(call) in done:  # the LLM repeats a call that already ran: stop here
                return self._composed(turn)
            outcome = yield from self._execute(turn, call, scene)
            scene = Scene(self.store.get(turn.session_id))
            if outcome.problem is not None:
                return outcome.problem
            messages += [
                AIMessage(content=ai.content if ai is not None else "", tool_calls=[call]),
                ToolMessage(content=outcome.observation, tool_call_id=call["id"], name=call["name"]),
            ]
            if outcome.ok:
                done.add(outcome.key)
                if not self._llm_writes_replies(turn):
                    return self._composed(turn)
                continue
            errors += 1
            repeated = outcome.key in failed
            failed.add(outcome.key)
            # a weak LLM's retry is not trusted and the auxiliary control would repeat its
            # own call, so only an LLM that writes replies gets the error back to retry
            if errors > MAX_TOOL_ERRORS or repeated or not self._llm_writes_replies(turn):
                return self._error_reply(call["name"], outcome)

        if last_ai is not None and not last_ai.tool_calls:
            return self._final_text(turn, last_ai)
        return self._composed(turn)

    # ---- the LLM ------------------------------------------------------------------------

    def _llm_gone(self, turn: _Turn) -> bool:
        return self.llm is None or turn.llm_error is not None

    def _llm_writes_replies(self, turn: _Turn) -> bool:
        return not self._llm_gone(turn) and self.llm is not None and self.llm.writes_replies

    def _propose(
        self, turn: _Turn, messages: list[BaseMessage], tools: list[StructuredTool], scene: Scene
    ) -> Generator[Event, None, AIMessage | None]:
        if self._llm_gone(turn):
            return None
        assert self.llm is not None
        proposal = self.llm.propose(messages, tools, _choices(scene))
        try:
            while True:
                token = next(proposal)
                yield "token", {"text": token}
        except StopIteration as stop:
            return stop.value if isinstance(stop.value, AIMessage) else None
        except LLMUnavailable as exc:
            log.warning("LLM unavailable: %s", exc.message)
            turn.llm_error = exc
            return None

    def _prompt(self, turn: _Turn, scene: Scene) -> list[BaseMessage]:
        llm = self.llm
        bound = self.settings.llm.max_history_chars
        if llm is not None and llm.history_chars is not None:
            bound = min(bound, llm.history_chars)
        system = Template(load_prompt(llm.prompt if llm else "system")).substitute(tools=self._tool_list())
        text = turn.message
        if turn.gesture is not None:
            text += f"\n[pointing: {turn.gesture.type} on the active image]"
        return [
            SystemMessage(content=system),
            SystemMessage(content=scene.context_block(turn.gesture)),
            *bounded_history(scene.state.messages, bound),
            HumanMessage(content=text),
        ]

    def _tool_list(self) -> str:
        lines = []
        for name in self._callable_tools():
            if name == UNDO_TOOL:
                lines.append(f"- {UNDO_TOOL}: {UNDO_DESCRIPTION}")
            else:
                lines.append(f"- {name}: {_first_sentence(self.registry.info(name).description)}")
        return "\n".join(lines)

    def _callable_tools(self) -> list[str]:
        return [*self.registry.available_names(), UNDO_TOOL]

    def _langchain_tools(self, session_id: str) -> list[StructuredTool]:
        """The registry's available tools (and undo) as LangChain structured tools."""
        tools = []
        for name in self.registry.available_names():
            tool = self.registry.get(name)

            def run(_name: str = name, **kwargs: Any) -> str:
                return self.runner.call(session_id, _name, kwargs).text

            tools.append(
                StructuredTool.from_function(
                    func=run, name=name, description=tool.description, args_schema=tool.args_model
                )
            )
        tools.append(
            StructuredTool.from_function(
                func=lambda: self._undo(session_id).observation,
                name=UNDO_TOOL,
                description=UNDO_DESCRIPTION,
                args_schema=UndoArgs,
            )
        )
        return tools

    # ---- step 1: which call -------------------------------------------------------------

    def _first_call(self, turn: _Turn, calls: list[Any]) -> dict[str, Any] | None:
        """The first call of the turn, its tool confirmed or replaced from the words."""
        proposed = calls[0] if calls else None
        trusted = self.llm is not None and self.llm.trusted_tools and not self._llm_gone(turn)
        name = proposed["name"] if proposed else None
        choice = self.aux.identify(name, turn.parsed, turn.gesture, trust_llm=trusted)
        if choice.tool is None:
            return None
        if proposed is not None and proposed["name"] == choice.tool:
            return dict(proposed)
        log.info("auxiliary control chose %s: %s", choice.tool, choice.reason)
        args = dict(proposed["args"]) if proposed is not None else {}
        return {"name": choice.tool, "args": args, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"}

    def _no_tool_reply(self, turn: _Turn, ai: AIMessage | None, calls: list[Any]) -> str:
        if calls and calls[0]["name"] not in self._callable_tools():
            invented = calls[0]["name"]
            return (
                f"There is no tool named '{invented}' on this server. The tools are: "
                f"{', '.join(self._callable_tools())}."
            )
        if ai is not None and self._llm_writes_replies(turn) and _text(ai).strip():
            return _text(ai)
        if turn.llm_error is not None:
            raise turn.llm_error
        return self._help(turn)

    def _help(self, turn: _Turn) -> str:
        available = ", ".join(self._callable_tools())
        return (
            f'I could not tell which tool fits "{_clip(turn.message, 80)}". Point at the image and say '
            "what to do, for example 'remove it', 'what is written here' or 'undo'. "
            f"Tools on this server: {available}."
        )

    # ---- steps 2 to 4: arguments, corrections, invocation -------------------------------

    def _execute(self, turn: _Turn, call: dict[str, Any], scene: Scene) -> Generator[Event, None, _Outcome]:
        name = str(call["name"])
        proposed = dict(call.get("args") or {})
        if name == UNDO_TOOL:
            return (yield from self._run_undo(turn))
        if name not in self.registry.names():
            message = f"there is no tool named '{name}'; the tools are {', '.join(self._callable_tools())}"
            return _Outcome(observation=f"Error: {message}", error=message, key=f"unknown:{name}")
        args = dict(proposed)
        missing = self.aux.missing_artifacts(name, args, scene)
        if turn.gesture is not None:  # the gesture will make the mask: nothing to ask for
            missing = [f for f in missing if ArtifactKind.mask not in f.kinds]
        if missing and not self._llm_gone(turn):
            args.update(self._ask_arguments(turn, name, missing, scene))
        correction = yield from self._correct(turn, name, args, scene)
        order = list(self.registry.get(name).args_model.model_fields)
        correction.recovered = [n for n in order if n in correction.args and proposed.get(n) != correction.args[n]]
        if correction.problem is not None:
            return _Outcome(observation=correction.problem, problem=correction.problem)
        info = self.registry.info(name)
        if not info.available:
            problem = f"This needs the {name} tool, which is unavailable on this server: {info.reason}"
            step = ChatStep(
                tool=name, args=correction.args, observation=f"not run: {info.reason}", recovered=correction.recovered
            )
            turn.steps.append(step)
            yield "step", step.model_dump(mode="json")
            return _Outcome(observation=problem, problem=problem)
        outcome = yield from self._invoke(turn, name, correction.args, correction.recovered)
        outcome.key = _proposal_key(call)
        return outcome

    def _correct(
        self, turn: _Turn, name: str, args: dict[str, Any], scene: Scene
    ) -> Generator[Event, None, Correction]:
        """Step 3, running the segment (or grounding) step a gesture (or a name) needs first."""
        history = " ".join(m.content for m in scene.state.messages[-6:] if m.role == "user")
        correction = self.aux.correct(name, args, turn.parsed, scene, turn.gesture, history_text=history)
        pre = correction.segment_first
        pre_tool = SEGMENT_TOOL
        if pre is None and correction.ground_first is not None:
            pre_tool = str(correction.ground_first["tool"])
            grounding = self.aux.correct(pre_tool, {}, turn.parsed, scene, None, history_text=history)
            if grounding.problem is not None:
                correction.problem = grounding.problem
                return correction
            pre = grounding.args
        if pre is None:
            return correction
        if not self.registry.info(pre_tool).available:
            correction.problem = (
                f"To use what you pointed at, the {pre_tool} tool must turn it into a mask, and it is "
                f"unavailable on this server: {self.registry.info(pre_tool).reason}"
            )
            return correction
        outcome = yield from self._invoke(turn, pre_tool, pre, sorted(pre))
        if not outcome.ok:
            correction.problem = f"Turning your pointing into a mask failed: {outcome.error}"
            return correction
        mask = next((a.path for a in reversed(turn.artifacts) if a.kind is ArtifactKind.mask), None)
        if mask is None:
            correction.problem = f"The {pre_tool} tool found nothing to select there; point again."
            return correction
        scene = Scene(self.store.get(turn.session_id))
        return self.aux.correct(name, args, turn.parsed, scene, turn.gesture, gesture_mask=mask, history_text=history)

    def _ask_arguments(self, turn: _Turn, tool: str, missing: list[ArtifactField], scene: Scene) -> dict[str, Any]:
        """Step 2: "What are the image_path and mask_path of the '...' API?" Only answers that
        name real artifacts of this session of the right kind are kept."""
        assert self.llm is not None
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
        try:
            answer = self.llm.ask_json(messages, schema) or {}
        except LLMUnavailable as exc:
            turn.llm_error = exc
            return {}
        return self.aux.accept_answer(tool, answer, scene)

    def _invoke(
        self, turn: _Turn, name: str, args: dict[str, Any], recovered: list[str]
    ) -> Generator[Event, None, _Outcome]:
        """Step 4: run through the runner, record the step, report it."""
        key = f"{name}:{json.dumps(args, sort_keys=True, default=str)}"
        state = self.store.get(turn.session_id)
        before = {"active_image": state.active_image, "active_mask": state.active_mask}
        try:
            result = self.runner.call(turn.session_id, name, args, record=False)
        except IgptError as exc:
            observation = f"Error from {name}: {exc.message}"
            step = ChatStep(tool=name, args=args, observation=observation, recovered=recovered)
            turn.steps.append(step)
            yield "step", step.model_dump(mode="json")
            return _Outcome(observation=observation, error=exc.message, key=key)
        paths = [a.path for a in result.artifacts]
        observation = result.text + (f" New files: {', '.join(paths)}." if paths else "")
        step = ChatStep(tool=name, args=args, observation=observation, recovered=recovered)
        self._record_user(turn)
        self.store.append_message(
            turn.session_id,
            "tool",
            result.text,
            {**step.model_dump(mode="json"), "artifacts": paths, "before": before, "data": _small(result.data)},
        )
        turn.steps.append(step)
        turn.artifacts.extend(result.artifacts)
        yield "step", step.model_dump(mode="json")
        return _Outcome(observation=observation, ok=True, key=key)

    # ---- undo ---------------------------------------------------------------------------

    def _run_undo(self, turn: _Turn) -> Generator[Event, None, _Outcome]:
        self._record_user(turn)
        result = self._undo(turn.session_id)
        if not result.ok:
            return _Outcome(observation=result.observation, problem=result.observation)
        step = ChatStep(tool=UNDO_TOOL, args={}, observation=result.observation, recovered=[])
        turn.steps.append(step)
        yield "step", step.model_dump(mode="json")
        return _Outcome(observation=result.observation, ok=True, key=f"undo:{len(turn.steps)}")

    def _undo(self, session_id: str) -> _Outcome:
        """Restore the active image and selection from before the last state-changing step."""
        state = self.store.get(session_id)
        tool_messages = [m for m in state.messages if m.role == "tool"]
        undone = {m.data.get("undone") for m in tool_messages if m.data.get("tool") == UNDO_TOOL}
        for message in reversed(tool_messages):
            data = message.data
            if data.get("tool") == UNDO_TOOL or message.seq in undone or not data.get("artifacts"):
                continue
            image, mask = _state_before(state, data)
            now = {"active_image": state.active_image, "active_mask": state.active_mask}
            self.store.update_state(session_id, active_image=image, active_mask=mask)
            observation = f"Undid {data.get('tool')}: the active image is {image or 'none'} again" + (
                f" and the selection is {mask}." if mask else "."
            )
            self.store.append_message(
                session_id,
                "tool",
                observation,
                {
                    "tool": UNDO_TOOL,
                    "args": {},
                    "observation": observation,
                    "recovered": [],
                    "artifacts": [],
                    "undone": message.seq,
                    "before": now,
                },
            )
            return _Outcome(observation=observation, ok=True)
        return _Outcome(observation="There is nothing to undo in this session yet.")

    # ---- replies ------------------------------------------------------------------------

    def _final_text(self, turn: _Turn, ai: AIMessage | None) -> str:
        text = _text(ai) if ai is not None and self._llm_writes_replies(turn) else ""
        return text.strip() or self._composed(turn)

    def _composed(self, turn: _Turn) -> str:
        """A reply from the observations (for LLMs that do not write replies)."""
        if not turn.steps:
            return self._help(turn)
        return " ".join(step.observation for step in turn.steps if not step.observation.startswith("not run"))

    @staticmethod
    def _error_reply(tool: str, outcome: _Outcome) -> str:
        return f"The {tool} tool could not do it: {outcome.error}"


class UndoArgs(BaseModel):
    """Undo takes no arguments."""

    model_config = ConfigDict(extra="forbid")


UNDO_DESCRIPTION = "Undo the last edit: make the previous image and selection active again. No arguments."


def _state_before(state: Any, data: dict[str, Any]) -> tuple[str | None, str | None]:
    """The active image and mask before a recorded step (inferred for steps recorded by the
    runner, which keep no ``before``: an image's parent, no selection)."""
    before = data.get("before")
    known = {a.path: a for a in state.artifacts}
    if isinstance(before, dict):
        image, mask = before.get("active_image"), before.get("active_mask")
        return (image if image in known else None, mask if mask in known else None)
    made = [known[p] for p in data.get("artifacts", []) if p in known]
    images = [a for a in made if a.kind is ArtifactKind.image]
    if images and images[0].parent in known:
        return images[0].parent, None
    return state.active_image, None


def _proposal_key(call: dict[str, Any]) -> str:
    """A call as the LLM proposed it (tool and raw args), to spot repeated proposals."""
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


__all__ = ["ChatStep", "ChatTurn", "Controller", "Intent"]
