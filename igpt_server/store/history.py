"""One shape for a session's history: a pydantic union of records, and the one writer.

Every state-changing or noteworthy thing that happens to a session is one
:data:`HistoryRecord`, discriminated by ``kind``:

* :class:`ToolStep` (``"tool_step"``): a tool call, from a chat turn (``source="chat"``) or
  ``POST /api/tools/{name}`` (``"rest"``); ``args``, ``observation``, ``recovered`` and
  ``chosen_by`` (who picked the tool: ``llm``, ``rules``, ``llm+rules``);
* :class:`GestureStep` (``"gesture"``): a tool call made by pointing (``intent`` select,
  ocr, move, sketch, and the ``gesture``);
* :class:`UndoStep` (``"undo"``) and :class:`RedoStep` (``"redo"``): the undo pointer moved;
* :class:`CaptionNote` (``"caption"``): a background caption of an image.

Each record is stored as one message (``role`` "tool" for steps, undo and redo, "event" for
captions; its ``data`` is the record's JSON, so older readers that look at ``data["tool"]``,
``data["args"]``, ``data["artifacts"]`` keep working). :func:`write` (also
``SessionStore.record``) is the only writer; :func:`read` gives the records back, typed.

Undo and redo (:func:`undo_state`): the **undo steps** are the *groups* of state-changing
records: all tool steps of one chat turn share ``group`` (one undo step), a gesture or a
REST tool call is its own group. Walking the history: a new group is pushed on the done stack
(and the redo stack is cleared), an undo moves the top of the done stack to the redo stack, a
redo moves it back. Undo restores the ``before`` state (active image and selection) of the
group's first record; redo restores the ``after`` state of its last one, exactly. Nothing is
deleted: undone artifacts stay in the session's file list.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from igpt_server.store.artifacts import Message

if TYPE_CHECKING:
    from igpt_server.store.sessions import SessionStore


class Snapshot(BaseModel):
    """The active image and selection (artifact paths or null) at one moment."""

    model_config = ConfigDict(extra="ignore")

    active_image: str | None = None
    active_mask: str | None = None


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    #: the undo step this record belongs to (all steps of one chat turn share it)
    group: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    before: Snapshot | None = None
    after: Snapshot | None = None

    def text(self) -> str:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def changes_state(self) -> bool:
        return self.before is not None and self.after is not None and self.before != self.after


class _Step(_Record):
    """A record whose text is what the step observed (tool steps, gestures, undo, redo)."""

    observation: str = ""

    def text(self) -> str:
        return self.observation


class ToolStep(_Step):
    kind: Literal["tool_step"] = "tool_step"
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    recovered: list[str] = Field(default_factory=list)
    chosen_by: str | None = None
    artifacts: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    source: Literal["chat", "rest"] = "chat"


class GestureStep(_Step):
    kind: Literal["gesture"] = "gesture"
    tool: str
    intent: str
    gesture: dict[str, Any]
    args: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)


class UndoStep(_Step):
    kind: Literal["undo"] = "undo"
    tool: Literal["undo"] = "undo"
    undone: str  # the group undone


class RedoStep(_Step):
    kind: Literal["redo"] = "redo"
    tool: Literal["redo"] = "redo"
    redone: str  # the group redone


class CaptionNote(_Record):
    kind: Literal["caption"] = "caption"
    event: Literal["caption"] = "caption"
    image_path: str
    caption: str
    backend: str | None = None

    def text(self) -> str:
        return f"Caption of {self.image_path}: {self.caption}"


HistoryRecord = Annotated[ToolStep | GestureStep | UndoStep | RedoStep | CaptionNote, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[HistoryRecord] = TypeAdapter(HistoryRecord)
_ROLES = {"tool_step": "tool", "gesture": "tool", "undo": "tool", "redo": "tool", "caption": "event"}


def snapshot(store: SessionStore, session_id: str) -> Snapshot:
    """The session's active image and selection now."""
    state = store.get(session_id)
    return Snapshot(active_image=state.active_image, active_mask=state.active_mask)


def write(store: SessionStore, session_id: str, record: HistoryRecord) -> Message:
    """Append ``record`` to the session's history (the one writer). A missing ``after`` is
    the session's state now (records are written right after the change they describe)."""
    if record.after is None and record.kind != "caption":
        record.after = snapshot(store, session_id)
    return store.append_message(session_id, _ROLES[record.kind], record.text(), record.model_dump(mode="json"))


def parse(message: Message) -> HistoryRecord | None:
    """The record a message holds, or None (user turns, replies, uploads, older messages)."""
    data: dict[str, Any] | None = dict(message.data)
    if data is not None and "kind" not in data:
        data = _legacy(message.role, data)
    if data is None:
        return None
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError:
        return None


def _legacy(role: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """Messages written before the union (plain dicts) read as records where they can."""
    if data.get("event") == "caption" and "image_path" in data:
        return {**data, "kind": "caption"}
    if role != "tool" or not data.get("tool"):
        return None
    if "after" not in data:  # the state a step of an older writer left: what it made became active
        made = [p for p in data.get("artifacts") or [] if isinstance(p, str)]
        image = next((p for p in made if p.startswith("image/")), None) or (data.get("args") or {}).get("image_path")
        mask = next((p for p in made if p.startswith("mask/")), None)
        data = {**data, "after": {"active_image": image, "active_mask": mask}}
    if "gesture" in data and "intent" in data:
        return {**data, "kind": "gesture"}
    return {**data, "kind": "tool_step", "source": "rest" if "observation" not in data else "chat"}


def read(messages: list[Message]) -> list[tuple[Message, HistoryRecord]]:
    """The records of ``messages`` (in order), each with its message (seq, time)."""
    out: list[tuple[Message, HistoryRecord]] = []
    for message in messages:
        record = parse(message)
        if record is not None:
            out.append((message, record))
    return out


class UndoState(BaseModel):
    """Where the undo pointer stands: the groups that can be undone / redone, newest last,
    with the state each would restore."""

    done: list[str]
    undone: list[str]
    restore_on_undo: Snapshot | None
    restore_on_redo: Snapshot | None

    @property
    def can_undo(self) -> bool:
        return bool(self.done)

    @property
    def can_redo(self) -> bool:
        return bool(self.undone)


def undo_state(messages: list[Message]) -> UndoState:
    """Replay the history's records into the undo and redo stacks (see the module docstring)."""
    first_before: dict[str, Snapshot] = {}
    last_after: dict[str, Snapshot] = {}
    done: list[str] = []
    undone: list[str] = []
    for _, record in read(messages):
        if isinstance(record, UndoStep):
            if record.undone in done:
                done.remove(record.undone)
                undone.append(record.undone)
        elif isinstance(record, RedoStep):
            if record.redone in undone:
                undone.remove(record.redone)
                done.append(record.redone)
        elif isinstance(record, ToolStep | GestureStep) and record.after is not None:
            before = record.before or _inferred_before(record)
            if record.group not in first_before:
                if before == record.after:
                    continue  # read-only (OCR, a question): nothing to undo
                first_before[record.group] = before
                done.append(record.group)
                undone.clear()
            last_after[record.group] = record.after
    return UndoState(
        done=done,
        undone=undone,
        restore_on_undo=first_before[done[-1]] if done else None,
        restore_on_redo=last_after[undone[-1]] if undone else None,
    )


def _existing(store: SessionStore, session_id: str, target: Snapshot) -> Snapshot:
    """``target`` with paths that are no longer artifacts of the session dropped."""
    known = {a.path for a in store.get(session_id).artifacts}
    image = target.active_image if target.active_image in known else None
    mask = target.active_mask if target.active_mask in known else None
    return Snapshot(active_image=image, active_mask=mask)


def undo(store: SessionStore, session_id: str) -> UndoStep | None:
    """Undo the newest undo step: restore the state before it and record an :class:`UndoStep`
    (None when there is nothing to undo). Call it holding the session's writer lock."""
    state = undo_state(store.messages(session_id))
    if not state.can_undo or state.restore_on_undo is None:
        return None
    before, target = _restore(store, session_id, state.restore_on_undo)
    record = UndoStep(undone=state.done[-1], before=before, after=target, observation="Undid the last edit.")
    write(store, session_id, record)
    return record


def redo(store: SessionStore, session_id: str) -> RedoStep | None:
    """Redo the newest undone step: restore exactly the image and selection it had made, and
    record a :class:`RedoStep` (None when there is nothing to redo)."""
    state = undo_state(store.messages(session_id))
    if not state.can_redo or state.restore_on_redo is None:
        return None
    before, target = _restore(store, session_id, state.restore_on_redo)
    record = RedoStep(redone=state.undone[-1], before=before, after=target, observation="Redid the edit.")
    write(store, session_id, record)
    return record


def _restore(store: SessionStore, session_id: str, wanted: Snapshot) -> tuple[Snapshot, Snapshot]:
    """Make ``wanted`` (as far as its artifacts still exist) the session's active image and
    selection; returns the state before and the state restored."""
    target = _existing(store, session_id, wanted)
    before = snapshot(store, session_id)
    store.update_state(session_id, active_image=target.active_image, active_mask=target.active_mask)
    return before, target


def _inferred_before(record: ToolStep | GestureStep) -> Snapshot:
    """For records written without ``before`` (older REST steps): the image the tool worked
    on, no selection."""
    image = record.args.get("image_path")
    return Snapshot(active_image=image if isinstance(image, str) else None, active_mask=None)


__all__ = [
    "CaptionNote",
    "GestureStep",
    "HistoryRecord",
    "RedoStep",
    "Snapshot",
    "ToolStep",
    "UndoState",
    "UndoStep",
    "parse",
    "read",
    "redo",
    "snapshot",
    "undo",
    "undo_state",
    "write",
]
