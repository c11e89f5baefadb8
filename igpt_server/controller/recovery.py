"""The auxiliary control: from words, pointing and an LLM's proposal to a correct tool call.

Every tool call of the controller passes through :class:`AuxiliaryControl`, in four steps:

1. **identify** the tool (:meth:`AuxiliaryControl.identify`): the request's verbs (see
   :mod:`igpt_server.controller.parse`) confirm the LLM's tool, or replace it when the LLM
   chose a tool the words do not name, invented one, or chose none;
2. **ask** the LLM for the artifact arguments the tool needs ("What are the image_path and
   mask_path of the 'remove' API?"), keeping only answers that name real artifacts of this
   session of the right kind (:meth:`AuxiliaryControl.missing_artifacts`,
   :meth:`AuxiliaryControl.accept_answer`; the question itself is asked by the agent);
3. **correct** each argument by rule (:meth:`AuxiliaryControl.correct`, pure: it reads the
   scene, changes nothing): an artifact of the right kind of this session; "it"/"this"/"the
   masked object" = the active selection; "the other one" = the other mask; a missing image
   = the active image; a mask's image = its parent (or an edit of it of the same size);
   sizes must match; a gesture sent with the message becomes the region/box the tool takes,
   or its mask (the ``segment`` tool runs first); words give the prompt, the query, the
   question, the scale and the direction; a missing video is the video of the frame the
   person is on, else the newest video; "at 0:12" gives the time; the person's own words
   are narrate's ``request``;
4. **invoke** through the runner (done by the agent) and report in ``recovered`` the
   argument names that were filled in or corrected.

With the embedded LLM, or when the LLM is absent, down or unusable, steps 1, 3 and 4 alone
carry every pointing task.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel

from igpt_server.controller.lexicon import INTENT_TOOLS, Intent, Ref, Vocabulary
from igpt_server.controller.parse import ParsedRequest
from igpt_server.controller.scene import Scene
from igpt_server.errors import InvalidInput
from igpt_server.perception.gestures import Box, Click, Drag, Stroke, check_inside
from igpt_server.perception.timecode import parse_time
from igpt_server.store import ArtifactKind
from igpt_server.tooling.interface import ArtifactRef
from igpt_server.tooling.registry import ToolRegistry
from igpt_server.tooling.runner import artifact_fields

GestureModel = Click | Box | Stroke | Drag
_GESTURE_CLASSES: tuple[type[BaseModel], ...] = (Click, Box, Stroke, Drag)
#: the tool that turns a gesture into a mask
SEGMENT_TOOL = "segment"
#: tools that find an object by name and return its mask (used when nothing was pointed at)
GROUNDING_TOOLS = ("ground_and_segment",)
#: the controller's own tools (not in the registry): they move the session's undo pointer
UNDO_TOOL = "undo"
REDO_TOOL = "redo"
#: the tools that make a cut-out and that invert a selection (scope: "everything but this")
EXTRACT_TOOL = "extract"
INVERT_TOOL = "invert_selection"
#: tools that only read (a scope such as "the background" is part of their question)
READ_ONLY_TOOLS = frozenset({"ocr", "vqa", "caption", "ground", "segment_everything"})
_ASKING = (Intent.QUESTION, Intent.DESCRIBE, Intent.OCR, Intent.GROUND)
#: tools a scope word does not change: reading ones, and crop ("crop around this" keeps the
#: selection's surroundings by definition, and never edits a pixel)
UNSCOPED_TOOLS = READ_ONLY_TOOLS | {"crop"}
#: the tool that turns the words of an image into a mask ("erase the text" with nothing pointed)
TEXT_MASK_TOOL = "text_mask"
#: how far "move it to the left" moves, as a share of the image's width or height
DEFAULT_MOVE_SHARE = 0.2
#: string fields filled from the words of the request
PROMPT_FIELDS = ("prompt", "text_prompt", "instruction")
QUERY_FIELDS = ("query", "text_query", "object", "name", "target", "label", "caption_query")
QUESTION_FIELDS = ("question",)
#: string fields that take the person's own words, whole ("request" of narrate: it steers the script)
REQUEST_FIELDS = ("request",)
#: fields that hold a time in a clip (seconds or "m:ss"): filled from "at 0:12", "at 12 seconds"
TIME_FIELDS = ("time",)
#: masks first (an image must fit its mask), images last (an optional image is only filled
#: when no other source, such as a sketch, was)
_ORDER = {ArtifactKind.mask: 0, ArtifactKind.image: 2}
#: the words that mention an artifact kind ("from my sketch", "the cut-out")
_KIND_REFS = {ArtifactKind.sketch: Ref.sketch, ArtifactKind.material: Ref.material}


# ---- what a tool's args model asks for ---------------------------------------------------


@dataclass(frozen=True)
class ArtifactField:
    name: str
    kinds: tuple[ArtifactKind, ...]
    required: bool
    is_list: bool


@dataclass(frozen=True)
class ToolFields:
    """The fields of an args model, sorted into what the rules know how to fill."""

    names: tuple[str, ...]
    required: frozenset[str]
    artifacts: tuple[ArtifactField, ...]
    gestures: dict[str, tuple[type[BaseModel], ...]]
    gesture_lists: frozenset[str]
    placements: dict[str, Placement]
    boxes: tuple[str, ...]
    strings: tuple[str, ...]
    numbers: tuple[str, ...]
    #: ``Literal`` string fields and their values ("effect": blur, darken...)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: time fields (:data:`TIME_FIELDS`) and whether each has no default time (None: "not given")
    times: dict[str, bool] = field(default_factory=dict)
    #: the ``max_length`` of string fields that declare one
    max_lengths: dict[str, int] = field(default_factory=dict)

    def artifact(self, name: str) -> ArtifactField | None:
        return next((f for f in self.artifacts if f.name == name), None)

    def mask_fields(self) -> list[ArtifactField]:
        return [f for f in self.artifacts if ArtifactKind.mask in f.kinds]

    def image_fields(self) -> list[ArtifactField]:
        return [f for f in self.artifacts if ArtifactKind.image in f.kinds]


@dataclass(frozen=True)
class Placement:
    """A list field of objects that each place one artifact (compose's ``materials``):
    ``item`` is the object's model, ``field`` its artifact field."""

    item: type[BaseModel]
    field: str
    kinds: tuple[ArtifactKind, ...]


def _placement(classes: set[type]) -> Placement | None:
    for cls in classes:
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls not in _GESTURE_CLASSES:
            refs = artifact_fields(cls)
            if len(refs) == 1:
                name, ref = next(iter(refs.items()))
                return Placement(cls, name, ref.kinds)
    return None


def _classes_in(annotation: Any) -> set[type]:
    found: set[type] = set()
    if isinstance(annotation, type):
        found.add(annotation)
    for arg in typing.get_args(annotation):
        found |= _classes_in(arg)
    return found


@cache
def tool_fields(args_model: type[BaseModel]) -> ToolFields:
    """Classify the fields of ``args_model`` (cached per model)."""
    refs: dict[str, ArtifactRef] = artifact_fields(args_model)
    artifacts, gestures, boxes, strings, numbers = [], {}, [], [], []
    gesture_lists: set[str] = set()
    placements: dict[str, Placement] = {}

    required = set()
    choices: dict[str, tuple[str, ...]] = {}
    times: dict[str, bool] = {}
    max_lengths: dict[str, int] = {}
    for name, info in args_model.model_fields.items():
        if info.is_required():
            required.add(name)
        classes = _classes_in(info.annotation)
        options = _literal_values(info.annotation)
        limit = next((m.max_length for m in info.metadata if isinstance(getattr(m, "max_length", None), int)), None)
        if limit is not None:
            max_lengths[name] = limit
        if options:
            choices[name] = options
        elif name in TIME_FIELDS and name not in refs:
            times[name] = info.default is None
        elif name in refs:
            is_list = list in classes or typing.get_origin(info.annotation) is list
            artifacts.append(ArtifactField(name, refs[name].kinds, info.is_required(), is_list))
        elif classes & set(_GESTURE_CLASSES):
            gestures[name] = tuple(c for c in _GESTURE_CLASSES if c in classes)
            if list in classes or typing.get_origin(info.annotation) is list:
                gesture_lists.add(name)
        elif (list in classes or typing.get_origin(info.annotation) is list) and (place := _placement(classes)):
            placements[name] = place
        elif name in ("box", "bbox") or (tuple in classes and float in classes):
            boxes.append(name)
        elif str in classes:
            strings.append(name)
        elif classes & {float, int} and bool not in classes:
            numbers.append(name)
    artifacts.sort(key=lambda f: min(_ORDER.get(k, 2) for k in f.kinds))
    return ToolFields(
        names=tuple(args_model.model_fields),
        required=frozenset(required),
        artifacts=tuple(artifacts),
        gestures=gestures,
        gesture_lists=frozenset(gesture_lists),
        placements=placements,
        boxes=tuple(boxes),
        strings=tuple(strings),
        numbers=tuple(numbers),
        choices=choices,
        times=times,
        max_lengths=max_lengths,
    )


def _literal_values(annotation: Any) -> tuple[str, ...]:
    """The string values of a ``Literal`` annotation (also inside ``Optional``), else ()."""
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(v for v in typing.get_args(annotation) if isinstance(v, str))
    for arg in typing.get_args(annotation):
        found = _literal_values(arg)
        if found:
            return found
    return ()


@dataclass(frozen=True)
class PlannedCall:
    """One call of a rule plan: the tool and the arguments the plan fixes ("region":
    "background"); ``pointing``: whether this step may use the gesture sent with the message
    (only the plan's first step does)."""

    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    pointing: bool = True


# ---- step 1: identify -------------------------------------------------------------------


@dataclass(frozen=True)
class ToolChoice:
    """The tool to call (None: no tool fits) and why."""

    tool: str | None
    source: str  # "llm", "lexicon", "llm+lexicon" or "none"
    reason: str = ""


# ---- step 3: correct --------------------------------------------------------------------


@dataclass
class Correction:
    """The corrected call, or what is missing.

    ``segment_first`` holds the args of a ``segment`` call to run before this one (a gesture
    that must become the mask); run it and call :meth:`AuxiliaryControl.correct` again with
    ``gesture_mask`` set to its mask. ``problem`` is a message for the user when the call
    cannot be made.
    """

    tool: str
    args: dict[str, Any]
    recovered: list[str] = field(default_factory=list)
    segment_first: dict[str, Any] | None = None
    ground_first: dict[str, Any] | None = None
    problem: str | None = None
    #: the session's active image and selection when the correction was made (for the history)
    state_before: Any = None


class Problem(Exception):
    """A call that cannot be made; the message tells the user what to do."""


class AuxiliaryControl:
    """Steps 1 to 3 of the auxiliary control over the tools of ``registry``."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry
        self.vocabulary = Vocabulary.of(
            [(name, registry.get(name).words, _all_choices(registry.get(name).args_model)) for name in registry.names()]
        )

    # -- step 1 --

    def tool_for_intent(self, intent: Intent) -> str | None:
        """The first tool of the intent that is registered (available or not)."""
        known = set(self.registry.names()) | {UNDO_TOOL, REDO_TOOL}
        names = [n for n in INTENT_TOOLS[intent] if n in known]
        available = [n for n in names if n in (UNDO_TOOL, REDO_TOOL) or self.registry.info(n).available]
        best = available or names
        return best[0] if best else None

    def lexicon_tool(self, parsed: ParsedRequest, gesture: GestureModel | None = None) -> str | None:
        """The tool the words name, or None. Pointing refines it: "select" with a gesture is
        ``segment``, without one a grounding tool; a drag with no verb is a move."""
        for match in parsed.intents:
            if match.tool is not None:
                if match.tool in self.registry.names():
                    return match.tool
                continue
            if match.intent is Intent.SELECT and gesture is None and parsed.object_phrase:
                grounding = [n for n in GROUNDING_TOOLS if n in self.registry.names()]
                if grounding:
                    return grounding[0]
            tool = self.tool_for_intent(match.intent)
            if tool is not None:
                return tool
        if isinstance(gesture, Drag) and "move" in self.registry.names():
            return "move"
        return None

    def identify(
        self,
        proposed: str | None,
        parsed: ParsedRequest,
        gesture: GestureModel | None = None,
        *,
        trust_llm: bool = True,
    ) -> ToolChoice:
        """Confirm the LLM's tool with the words, or replace it.

        The LLM's tool stands when the words name it (or name nothing and it is a real tool);
        the words' tool stands when the LLM chose another, invented one or chose none. With
        ``trust_llm=False`` (a weak LLM such as the embedded one) the LLM's tool only counts
        when the words name it too.
        """
        known = set(self.registry.names()) | {UNDO_TOOL, REDO_TOOL}
        words_tool = self.lexicon_tool(parsed, gesture)
        named = {n for n in parsed.tool_candidates() if n in known}
        if not trust_llm:
            if words_tool is None:
                return ToolChoice(None, "none", "no tool named by the words (the LLM's choice alone is not trusted)")
            source = "llm+lexicon" if proposed == words_tool else "lexicon"
            return ToolChoice(words_tool, source, "" if source != "lexicon" else f"the LLM chose {proposed!r}")
        if proposed is not None and proposed in known:
            if words_tool is None or proposed in named or proposed == words_tool:
                return ToolChoice(proposed, "llm+lexicon" if words_tool else "llm")
            return ToolChoice(words_tool, "lexicon", f"the words name {words_tool!r}, not {proposed!r}")
        if words_tool is not None:
            why = f"the LLM named no tool {proposed!r}" if proposed else "the LLM chose no tool"
            return ToolChoice(words_tool, "lexicon", why)
        if proposed is not None:
            return ToolChoice(None, "none", f"there is no tool {proposed!r}")
        return ToolChoice(None, "none", "no tool named by the words")

    def plan(self, tool: str, parsed: ParsedRequest, gesture: GestureModel | None, scene: Scene) -> list[PlannedCall]:
        """The calls a request needs, first to last; a :class:`Problem` (a question back) when
        it cannot be scoped safely.

        * "erase the text" with nothing pointed at: ``text_mask`` (every word of the image)
          then the tool;
        * scope (:attr:`ParsedRequest.scope`): "everything but this", "except the dog", "the
          background", "the rest" apply to the complement of the selection, never to the
          object: a tool with a ``background`` choice gets it; "remove/erase everything but
          the dog" and "keep only this" make a **cut-out** of the object (``extract``: the
          object on a transparent background, the photo untouched), which is what people
          mean by it and never touches the object; a tool that takes a mask runs on the
          inverted selection (``invert_selection`` first); anything else is asked back.
        """
        names = set(self.registry.names())
        if tool not in names:
            return [PlannedCall(tool)]
        fields = tool_fields(self.registry.get(tool).args_model)
        if (
            parsed.has(Ref.text)
            and gesture is None
            and TEXT_MASK_TOOL in names
            and tool != TEXT_MASK_TOOL
            and any(f.required for f in fields.mask_fields())
            and not parsed.has(Ref.selection)
            and parsed.scope is None
        ):
            return [PlannedCall(TEXT_MASK_TOOL), PlannedCall(tool, pointing=False)]
        if parsed.scope == "complement" and tool in (SEGMENT_TOOL, "segment_everything") and INVERT_TOOL in names:
            tool = INVERT_TOOL  # "select everything but the dog"
        if parsed.scope is None or tool in UNSCOPED_TOOLS or parsed.intent in _ASKING:
            return [PlannedCall(tool)]  # a question about the background is no edit of it
        if not self._has_target(parsed, gesture, scene):
            what = f"the {parsed.object_phrase}" if parsed.object_phrase else "the part to keep as it is"
            raise Problem(f"Which part should stay untouched? Click {what} first, then say it again.")
        background = next((n for n, opts in fields.choices.items() if "background" in opts), None)
        if parsed.scope == "keep_only" or tool in (EXTRACT_TOOL, "remove") or parsed.intent is Intent.REMOVE:
            if EXTRACT_TOOL in names:
                return [PlannedCall(EXTRACT_TOOL)]
            raise Problem("I can't cut an object out on this server, so I won't touch the rest; select what to change.")
        if background is not None:
            return [PlannedCall(tool, {background: "background"})]
        if tool in (INVERT_TOOL, SEGMENT_TOOL) and INVERT_TOOL in names:
            return [PlannedCall(INVERT_TOOL)]
        if any(f.required for f in fields.mask_fields()) and INVERT_TOOL in names:
            return [PlannedCall(INVERT_TOOL), PlannedCall(tool, pointing=False)]
        raise Problem(
            f"I can't apply {tool} to everything except the selection safely; select the part to change instead."
        )

    def _has_target(self, parsed: ParsedRequest, gesture: GestureModel | None, scene: Scene) -> bool:
        """Whether the object a scoped request keeps is known: pointed at, selected on the
        active image, or findable by name."""
        if gesture is not None:
            return True
        mask = scene.state.active_mask
        if mask is not None and scene.image_fits_mask(scene.state.active_image, mask):
            return True
        grounding = [n for n in GROUNDING_TOOLS if n in self.registry.names() and self.registry.info(n).available]
        return bool(parsed.object_phrase and grounding)

    # -- step 2 --

    def missing_artifacts(self, tool: str, args: dict[str, Any], scene: Scene) -> list[ArtifactField]:
        """Required artifact fields whose value is absent or not a session artifact of the
        right kind: what to ask the LLM for."""
        fields = tool_fields(self.registry.get(tool).args_model)
        missing = [
            f for f in fields.artifacts if f.required and not f.is_list and not scene.is_kind(args.get(f.name), f.kinds)
        ]
        return sorted(missing, key=lambda f: fields.names.index(f.name))

    def accept_answer(self, tool: str, answer: dict[str, Any], scene: Scene) -> dict[str, Any]:
        """The fields of an LLM answer that name real artifacts of this session of the right kind."""
        fields = tool_fields(self.registry.get(tool).args_model)
        kept: dict[str, Any] = {}
        for f in fields.artifacts:
            value = answer.get(f.name)
            whole_list = f.is_list and isinstance(value, list) and bool(value)
            if (whole_list and all(scene.is_kind(v, f.kinds) for v in value or [])) or scene.is_kind(value, f.kinds):
                kept[f.name] = value
        return kept

    # -- step 3 --

    def correct(
        self,
        tool: str,
        proposed: dict[str, Any],
        parsed: ParsedRequest,
        scene: Scene,
        gesture: GestureModel | None = None,
        *,
        gesture_mask: str | None = None,
        history_text: str = "",
    ) -> Correction:
        """Apply every rule to the proposed args of ``tool``; see the module docstring."""
        fields = tool_fields(self.registry.get(tool).args_model)
        args = {k: v for k, v in proposed.items() if k in fields.names and v is not None}
        correction = Correction(tool=tool, args=args)
        try:
            explicit = explicit_artifacts(parsed, scene)
            if gesture is not None:
                image = scene.active_image
                if image is None:
                    raise Problem("You pointed at the image, but no image is open: upload one first.")
                check_inside(gesture, image.width or 0, image.height or 0)
            gesture_used = self._gesture_fields(fields, args, gesture)
            for spec in fields.artifacts:
                self._artifact(
                    spec, fields, args, parsed, scene, explicit, correction, gesture, gesture_used, gesture_mask
                )
                if correction.segment_first is not None or correction.ground_first is not None:
                    return correction
            self._placements(fields, args, parsed, scene, gesture)
            self._sizes(fields, args, scene)
            self._boxes(fields, args, gesture, gesture_used)
            self._strings(tool, fields, args, parsed, history_text, dict(self.registry.get(tool).words.roles))
            self._times(fields, args, parsed, scene)
            self._choices(fields, args, parsed)
            self._numbers(fields, args, parsed, scene, gesture)
            missing = [n for n in fields.required if n not in args]
            if missing:
                raise Problem(_missing_message(tool, missing))
        except Problem as problem:
            correction.problem = str(problem)
        except Exception as exc:  # InvalidInput from check_inside and the like
            message = getattr(exc, "message", None)
            if message is None:
                raise
            correction.problem = message
        correction.args = {n: args[n] for n in fields.names if n in args}

        correction.recovered = [n for n in fields.names if n in args and proposed.get(n) != args[n]]
        return correction

    # the rules, one per kind of field

    @staticmethod
    def _gesture_fields(fields: ToolFields, args: dict[str, Any], gesture: GestureModel | None) -> bool:
        """Put a gesture sent with the message into the first field that takes its type."""
        if gesture is None:
            return False
        for name, classes in fields.gestures.items():
            if isinstance(gesture, classes):
                value = gesture.model_dump(mode="json")
                args[name] = [value] if name in fields.gesture_lists else value
                return True
        return False

    def _artifact(
        self,
        spec: ArtifactField,
        fields: ToolFields,
        args: dict[str, Any],
        parsed: ParsedRequest,
        scene: Scene,
        explicit: dict[ArtifactKind, str],
        correction: Correction,
        gesture: GestureModel | None,
        gesture_used: bool,
        gesture_mask: str | None,
    ) -> None:
        value = args.get(spec.name)
        if spec.is_list:
            self._artifact_list(spec, args, scene, explicit)
            return
        if ArtifactKind.mask in spec.kinds:
            chosen = self._mask(spec, value, parsed, scene, explicit, gesture, gesture_used, gesture_mask, correction)
            if correction.segment_first is not None or correction.ground_first is not None:
                return
        elif ArtifactKind.image in spec.kinds:
            masks = [args[f.name] for f in fields.mask_fields() if isinstance(args.get(f.name), str)]
            mask = masks[0] if masks else None
            pointed = gesture is not None or parsed.has(Ref.selection)
            other_source = any(args.get(f.name) for f in fields.artifacts if f.name != spec.name)
            mentioned = parsed.has(Ref.image) or parsed.has(Ref.original) or (pointed and not other_source)
            if spec.required or mask is not None or mentioned:
                chosen = self._image(spec, value, parsed, scene, explicit, mask)
            else:  # an optional image nobody mentioned: only an explicit or the LLM's valid one
                chosen = explicit.get(ArtifactKind.image) or (str(value) if scene.is_kind(value, spec.kinds) else None)
        else:
            mentioned = any(parsed.has(_KIND_REFS[k]) for k in spec.kinds if k in _KIND_REFS)
            if spec.required or mentioned:
                chosen = self._other_artifact(spec, value, scene, explicit)
            else:
                named = [explicit[k] for k in spec.kinds if k in explicit]
                chosen = named[0] if named else (str(value) if scene.is_kind(value, spec.kinds) else None)
        if chosen is None:
            args.pop(spec.name, None)
        else:
            args[spec.name] = chosen

    def _mask(
        self,
        spec: ArtifactField,
        value: Any,
        parsed: ParsedRequest,
        scene: Scene,
        explicit: dict[ArtifactKind, str],
        gesture: GestureModel | None,
        gesture_used: bool,
        gesture_mask: str | None,
        correction: Correction,
    ) -> str | None:
        """Explicit path > the mask of this turn's gesture > "the other one" > "it"/"this" =
        the active selection > the LLM's mask > (required) the active selection, the last
        mask used, a grounding tool for a named object."""
        kinds = (ArtifactKind.mask,)
        if ArtifactKind.mask in explicit:
            return explicit[ArtifactKind.mask]
        if gesture_mask is not None:
            return gesture_mask
        active = scene.state.active_mask
        if isinstance(gesture, Drag) and active is not None:
            return active  # dragging the selection
        if gesture_used and not spec.required:
            return None  # the gesture itself is the region
        if gesture is not None and not gesture_used:
            segment_args = self._segment_args(gesture, scene, exact=parsed.has(Ref.text))
            if segment_args is not None:
                correction.segment_first = segment_args
                return None
        # a scoped request ("the background", "everything but this") needs the selection it keeps
        refers = parsed.has(Ref.selection) or gesture is not None or parsed.scope is not None
        if parsed.has(Ref.other):
            other = scene.other_mask()
            if other is None:
                raise Problem("There is no other selected object: point at it (click, box or brush) first.")
            return other
        if refers and active is not None:
            return active
        if scene.is_kind(value, kinds) and (spec.required or refers):
            return str(value)
        if not spec.required:
            return None
        if active is not None:
            return active
        last = scene.last_used_mask()
        if parsed.has(Ref.selection) and last is not None and scene.image_fits_mask(scene.state.active_image, last):
            return last
        grounding = [n for n in GROUNDING_TOOLS if n in self.registry.names() and self.registry.info(n).available]
        if parsed.object_phrase and grounding and scene.state.active_image is not None:
            correction.ground_first = {"tool": grounding[0]}
            return None
        raise Problem(self._no_mask_message(correction.tool, parsed))

    def _no_mask_message(self, tool: str, parsed: ParsedRequest) -> str:
        """A short question back: what to point at."""
        if parsed.object_phrase:
            return (
                f"Which one is the {_clip_words(parsed.object_phrase)}? Click it (or draw a box around it), "
                "then say it again."
            )
        return "Which part do you mean? Click it, draw a box or brush over it, then say it again."

    def _segment_args(self, gesture: GestureModel, scene: Scene, exact: bool = False) -> dict[str, Any] | None:
        """Args of a ``segment`` call that turns ``gesture`` into a mask of the active image.

        With ``exact`` (the words name text: "erase the text"), a box or brush stroke is the
        mask itself: text is no object for the segmenter to find."""
        if SEGMENT_TOOL not in self.registry.names():
            raise Problem("A gesture was sent, but this server has no segment tool to turn it into a mask.")
        fields = tool_fields(self.registry.get(SEGMENT_TOOL).args_model)
        pointing: GestureModel = gesture
        if isinstance(gesture, Drag):  # a drag picks up what lies under its start
            pointing = Click.model_validate({"points": [{"x": gesture.start[0], "y": gesture.start[1], "label": 1}]})
        args: dict[str, Any] = {}
        for spec in fields.image_fields():
            args[spec.name] = scene.state.active_image
        if not self._gesture_fields(fields, args, pointing):
            return None
        if (
            exact
            and not isinstance(pointing, Click)
            and "exact" in self.registry.get(SEGMENT_TOOL).args_model.model_fields
        ):
            args["exact"] = True
        return args

    def _image(
        self,
        spec: ArtifactField,
        value: Any,
        parsed: ParsedRequest,
        scene: Scene,
        explicit: dict[ArtifactKind, str],
        mask: str | None,
    ) -> str | None:
        """Explicit path > "the original" > the image the mask was made from (the LLM's, the
        active image or the mask's parent, whichever fits) > the active image."""
        kinds = spec.kinds
        if ArtifactKind.image in explicit:
            return explicit[ArtifactKind.image]
        active = scene.state.active_image
        if mask is not None:
            for candidate in (active, value):
                if scene.is_kind(candidate, kinds) and scene.image_fits_mask(candidate, mask):
                    return str(candidate)
            return scene.artifact(mask).parent  # type: ignore[union-attr]
        if parsed.has(Ref.original) and active is not None:
            return scene.root(active)
        if active is not None:
            return active
        if scene.is_kind(value, kinds):
            return str(value)
        if spec.required:
            raise Problem("No image is open: upload an image first (or name one of this session's images).")
        return None

    @staticmethod
    def _other_artifact(spec: ArtifactField, value: Any, scene: Scene, explicit: dict[ArtifactKind, str]) -> str | None:
        """Sketches, materials, audio, video: explicit > (a video) the video of the frame the
        person is on > the LLM's > the newest fitting one. The frame's video stands unless a
        video was added after that frame (a new upload or a tool's clip: the newest is what
        "this video" means then)."""
        for kind in spec.kinds:
            if kind in explicit:
                return explicit[kind]
        if ArtifactKind.video in spec.kinds:
            paused = active_frame(scene)
            if paused is not None and not _video_after(scene, scene.state.active_image):
                return paused[0]
        if scene.is_kind(value, spec.kinds):
            return str(value)
        for kind in spec.kinds:
            if kind is ArtifactKind.material and scene.state.materials:
                return scene.state.materials[-1]
            latest = scene.latest(kind, fits_image=scene.state.active_image)
            if latest is not None:
                return latest
        if spec.required:
            what = " or ".join(k.value for k in spec.kinds)
            hint = {
                ArtifactKind.sketch: "draw strokes on the canvas first (sketch mode)",
                ArtifactKind.material: "cut an object out first (say 'cut it out')",
            }.get(spec.kinds[0], f"upload or make a {what} first")
            raise Problem(f"This needs a {what} and the session has none: {hint}.")
        return None

    @staticmethod
    def _artifact_list(
        spec: ArtifactField, args: dict[str, Any], scene: Scene, explicit: dict[ArtifactKind, str]
    ) -> None:
        value = args.get(spec.name)
        if isinstance(value, list):
            value = [v for v in value if scene.is_kind(v, spec.kinds)]
        if not value:
            picked = [explicit[k] for k in spec.kinds if k in explicit]
            if not picked and ArtifactKind.material in spec.kinds and scene.state.materials:
                picked = [scene.state.materials[-1]]
            value = picked
        if value:
            args[spec.name] = value
        else:
            args.pop(spec.name, None)

    @staticmethod
    def _placements(
        fields: ToolFields, args: dict[str, Any], parsed: ParsedRequest, scene: Scene, gesture: GestureModel | None
    ) -> None:
        """A list of placed artifacts (compose's materials): kept when every item names a real
        artifact; else the newest material, centred on the point of a click or box."""
        for name, place in fields.placements.items():
            items = args.get(name)
            real = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
            if (
                real
                and len(real) == len(items or [])
                and all(scene.is_kind(i.get(place.field), place.kinds) for i in real)
            ):
                continue

            mentioned = any(parsed.has(_KIND_REFS[k]) for k in place.kinds if k in _KIND_REFS)
            if name not in fields.required and not mentioned:
                args.pop(name, None)
                continue
            latest = None
            if ArtifactKind.material in place.kinds and scene.state.materials:
                latest = scene.state.materials[-1]
            for kind in place.kinds:
                latest = latest or scene.latest(kind)
            if latest is None:
                raise Problem("There is no cut-out to place yet: select an object and say 'cut it out' first.")
            item: dict[str, Any] = {place.field: latest}
            point = _point_of(gesture)
            artifact = scene.artifact(latest)
            if point is not None and artifact is not None and {"x", "y"} <= set(place.item.model_fields):
                item["x"] = point[0] - (artifact.width or 0) / 2
                item["y"] = point[1] - (artifact.height or 0) / 2
            args[name] = [item]

    @staticmethod
    def _sizes(fields: ToolFields, args: dict[str, Any], scene: Scene) -> None:
        """A mask and its image must have the same size."""
        for mask_field in fields.mask_fields():
            mask = args.get(mask_field.name)
            if not isinstance(mask, str):
                continue
            for image_field in fields.image_fields():
                image = args.get(image_field.name)
                if isinstance(image, str) and not scene.same_size(image, mask):
                    parent = scene.artifact(mask).parent  # type: ignore[union-attr]
                    if parent is not None and scene.same_size(parent, mask):
                        args[image_field.name] = parent
                    else:
                        raise Problem(f"The mask {mask} does not have the size of the image {image}; select again.")

    @staticmethod
    def _boxes(fields: ToolFields, args: dict[str, Any], gesture: GestureModel | None, gesture_used: bool) -> None:
        """A box field takes a box gesture, or the bounding box of any other gesture."""
        if gesture is None or gesture_used or not fields.boxes:
            return
        if isinstance(gesture, Box):
            box = list(gesture.xyxy())
        else:
            from igpt_server.perception.gestures import gesture_points

            points = gesture_points(gesture)
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            box = [min(xs), min(ys), max(xs) + 1, max(ys) + 1]
        args[fields.boxes[0]] = box

    @staticmethod
    def _choices(fields: ToolFields, args: dict[str, Any], parsed: ParsedRequest) -> None:
        """A ``Literal`` field takes the value the words name ("blur", "darken"); the LLM's
        value stands when the words name none. A "background" value is kept only when the
        words scope the request to it (never an edit of the wrong region on a guess)."""
        for name, options in fields.choices.items():
            value = args.get(name)
            named = [v for v in parsed.values if v in options]
            if "background" in options and parsed.scope == "complement":
                named = ["background"]
            if named:
                args[name] = named[0]
            elif value not in options or (value == "background" and parsed.scope != "complement"):
                args.pop(name, None)

    @staticmethod
    def _strings(
        tool: str,
        fields: ToolFields,
        args: dict[str, Any],
        parsed: ParsedRequest,
        history_text: str,
        roles: dict[str, str] | None = None,
    ) -> None:
        """Prompt, query and question come from the words unless the LLM's value is grounded
        in them (every content word of it was said). A field's role comes from the tool's
        :class:`ToolWords` ``roles``, else from its name."""
        said = parsed.text + " " + history_text
        roles = roles or {}
        for name in fields.strings:
            value = args.get(name)
            lexical: str | None = None
            role = roles.get(name)
            if role == "prompt" or (role is None and name in PROMPT_FIELDS):
                lexical = parsed.replacement
            elif role == "query" or (role is None and name in QUERY_FIELDS):
                lexical = parsed.object_phrase
            elif role == "question" or (role is None and name in QUESTION_FIELDS):
                lexical = parsed.text.strip() or None
            elif (role == "request" or (role is None and name in REQUEST_FIELDS)) and parsed.text.strip():
                args[name] = parsed.text.strip()[: fields.max_lengths.get(name)]
                continue
            if isinstance(value, str) and value.strip() and (lexical is None or grounded(value, said)):
                continue
            if lexical is not None:
                args[name] = lexical
            elif value is not None and not isinstance(value, str):
                args.pop(name, None)

    @staticmethod
    def _times(fields: ToolFields, args: dict[str, Any], parsed: ParsedRequest, scene: Scene) -> None:
        """A time field takes the time the words name ("at 0:12" -> 12.0 s), over the LLM's;
        else the LLM's when it reads as a time; else, for a field whose default is "no time"
        (highlight's "a moment inside it"), the time of the frame the person paused on when
        it is a frame of the same video; else it is left out (the tool's default)."""
        for name, optional in fields.times.items():
            if parsed.time_s is not None:
                args[name] = parsed.time_s
                continue
            value = args.get(name)
            if value is not None and _time_value(value) is None:
                args.pop(name)
            if name in args or not optional:
                continue
            paused = active_frame(scene)
            videos = [v for v in args.values() if isinstance(v, str) and scene.is_kind(v, (ArtifactKind.video,))]
            if paused is not None and paused[0] in videos:
                args[name] = paused[1]

    @staticmethod
    def _numbers(
        fields: ToolFields, args: dict[str, Any], parsed: ParsedRequest, scene: Scene, gesture: GestureModel | None
    ) -> None:
        """dx/dy from a drag or the words' direction; scale from "bigger"/"smaller"."""
        names = set(fields.numbers)
        for name in fields.numbers:
            value = args.get(name)
            if value is not None and not _finite_number(value):
                args.pop(name)
        if {"dx", "dy"} <= names:
            if isinstance(gesture, Drag):
                args["dx"], args["dy"] = gesture.vector()
            elif parsed.direction is not None:
                image = scene.active_image
                width, height = (image.width or 0, image.height or 0) if image else (0, 0)
                ux, uy = parsed.direction
                distance_x = parsed.distance_px or round(width * DEFAULT_MOVE_SHARE)
                distance_y = parsed.distance_px or round(height * DEFAULT_MOVE_SHARE)
                want = (ux * distance_x, uy * distance_y)
                have = (args.get("dx", 0) or 0, args.get("dy", 0) or 0)
                if not _same_direction(have, want):
                    args["dx"], args["dy"] = want
        if "scale" in names and parsed.scale is not None:
            have_scale = args.get("scale")
            if not isinstance(have_scale, int | float) or (have_scale - 1) * (parsed.scale - 1) <= 0:
                args["scale"] = parsed.scale


def active_frame(scene: Scene) -> tuple[str, float] | None:
    """(video path, time in s) of the frame the active image is, or was edited from: the
    nearest image of its lineage whose parent is a video of the session and whose meta holds
    ``time_s`` (made by the ``frame`` tool or by pausing the player); None otherwise."""
    for path in scene.lineage(scene.state.active_image):
        artifact = scene.artifact(path)
        if artifact is None or not scene.is_kind(artifact.parent, (ArtifactKind.video,)):
            continue
        time = artifact.meta.get("time_s")
        if isinstance(time, int | float) and not isinstance(time, bool):
            return str(artifact.parent), float(time)
    return None


def _video_after(scene: Scene, path: str | None) -> bool:
    """Whether a video artifact was added to the session after the artifact at ``path``."""
    paths = [a.path for a in scene.state.artifacts]
    if path not in paths:
        return False
    return any(a.kind is ArtifactKind.video for a in scene.state.artifacts[paths.index(path) + 1 :])


def _time_value(value: Any) -> float | None:
    """Seconds of a time argument (12.5, "0:12"), or None when it is no time."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return parse_time(value)
    except InvalidInput:
        return None


def _clip_words(text: str, limit: int = 6) -> str:
    words = text.split()
    return " ".join(words[:limit])


def _all_choices(args_model: type[BaseModel]) -> list[str]:
    """Every value of every ``Literal`` field of ``args_model``."""
    return [v for options in tool_fields(args_model).choices.values() for v in options]


def _point_of(gesture: GestureModel | None) -> tuple[float, float] | None:
    """Where a click (its first include point), a box (its centre) or a drag (its end) points."""
    if isinstance(gesture, Click):
        first = next(p for p in gesture.points if p.label == 1)
        return (first.x, first.y)
    if isinstance(gesture, Box):
        return ((gesture.x0 + gesture.x1) / 2, (gesture.y0 + gesture.y1) / 2)
    if isinstance(gesture, Drag):
        return (gesture.end[0], gesture.end[1])
    return None


def _finite_number(value: Any) -> bool:

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same_direction(have: tuple[float, float], want: tuple[float, float]) -> bool:
    """True when ``have`` points the way ``want`` does on every axis ``want`` moves along."""
    for h, w in zip(have, want, strict=True):
        if w != 0 and (h == 0 or (h > 0) != (w > 0)):
            return False
        if w == 0 and h != 0:
            return False
    return True


def _missing_message(tool: str, missing: list[str]) -> str:
    hints = {
        "prompt": "say what to put there, e.g. 'replace it with a red car'",
        "query": "name the object, e.g. 'find the dog'",
        "question": "ask the question in words",
    }
    parts = [hints.get(n, f"give {n}") for n in missing]
    return f"The {tool} tool needs {', '.join(missing)}: {'; '.join(parts)}."


_WORD_RE = re.compile(r"[a-z0-9]+")
_IGNORED = frozenset(["a", "an", "the", "of", "with", "to", "into", "in", "on", "at", "for", "by", "and", "or"])


def grounded(value: str, said: str) -> bool:
    """True when every content word of ``value`` occurs in ``said`` (case-insensitive)."""
    words = set(_WORD_RE.findall(said.lower()))
    content = [w for w in _WORD_RE.findall(value.lower()) if w not in _IGNORED]
    return bool(content) and all(w in words or w.rstrip("s") in words for w in content)


def explicit_artifacts(parsed: ParsedRequest, scene: Scene) -> dict[ArtifactKind, str]:
    """Artifacts the message names by path, by kind. A named path that is not an artifact of
    this session (a file-system path, another session's file) is refused with a :class:`Problem`."""
    named: dict[ArtifactKind, str] = {}
    for path in parsed.paths:
        artifact = scene.artifact(path)
        if artifact is None:
            raise Problem(
                f"'{path}' is not a file of this session; I can only use this session's images, masks "
                "and other artifacts (see the list of files), never paths on the server."
            )
        named.setdefault(artifact.kind, artifact.path)
    return named
