"""The controller with scripted fake LLMs: what the auxiliary control recovers from right,
wrong, invented and missing arguments, tool errors, a missing or broken LLM, memory, undo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from igpt_server.controller import ChatLLM, LLMUnavailable
from igpt_server.controller.agent import MAX_MESSAGE_CHARS
from igpt_server.errors import InvalidInput
from igpt_server.perception.gestures import Click
from tests.controller_support import BrokenTool, Rig


class Scripted(FakeMessagesListChatModel):
    """Replies from a script, in order; remembers every prompt it was given."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, stop, run_manager, **kw)


class Down(BaseChatModel):
    """An LLM whose endpoint refuses every connection."""

    @property
    def _llm_type(self) -> str:
        return "down"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        raise ConnectionRefusedError("[Errno 111] Connection refused")


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{name}"}])


def scripted(*replies: AIMessage | str) -> Scripted:
    return Scripted(responses=[r if isinstance(r, AIMessage) else AIMessage(content=r) for r in replies])


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path / "data")
    yield rig
    rig.close()


def use(rig: Rig, model: BaseChatModel) -> None:
    rig.controller.llm = ChatLLM.of(model)


def square(x0: int, y0: int, side: int) -> np.ndarray:
    mask = np.zeros((512, 512), dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


# ---- right, wrong, invented, missing arguments --------------------------------------------


def test_right_arguments_run_as_given(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    use(rig, scripted(call("remove", image_path=image, mask_path=mask), "I removed the dog."))
    turn = rig.controller.chat(sid, "remove it")
    assert [(s.tool, s.args, s.recovered) for s in turn.steps] == [
        ("remove", {"image_path": image, "mask_path": mask}, [])
    ]
    assert turn.reply == "I removed the dog."
    assert [a.parent for a in turn.artifacts] == [image]
    assert rig.store.get(sid).active_image == turn.artifacts[0].path


def test_a_wrong_mask_is_corrected_to_the_selection(rig: Rig) -> None:
    sid, image, selection = rig.session_with(mask="dog_on_bench_mask.png")
    older = rig.add_mask(sid, image, square(0, 0, 40), select=False)
    use(rig, scripted(call("remove", image_path=image, mask_path=older), "Done."))
    turn = rig.controller.chat(sid, "remove the masked object")
    assert turn.steps[0].args == {"image_path": image, "mask_path": selection}
    assert turn.steps[0].recovered == ["mask_path"]


def test_an_invented_tool_and_invented_paths_are_recovered(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    use(rig, scripted(call("magic_eraser", image_path="/etc/passwd", mask_path="../other/mask.png"), "Done."))
    turn = rig.controller.chat(sid, "erase it")
    step = turn.steps[0]
    assert step.tool == "remove" and step.args == {"image_path": image, "mask_path": mask}
    assert step.recovered == ["image_path", "mask_path"]


def test_missing_arguments_are_asked_for_and_real_answers_kept(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    model = scripted(
        call("remove"),
        json.dumps({"image_path": image, "mask_path": mask}),
        "Removed.",
    )
    use(rig, model)
    turn = rig.controller.chat(sid, "remove the dog on the bench")
    assert turn.steps[0].args == {"image_path": image, "mask_path": mask}
    assert turn.steps[0].recovered == ["image_path", "mask_path"]
    question = model.seen[1][-1]
    assert isinstance(question, HumanMessage)
    assert "What are the image_path and mask_path of the" in question.text


def test_invented_answers_to_the_question_are_dropped_and_the_rules_fill_in(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    other_sid, other_image, _ = rig.session_with()
    use(rig, scripted(call("remove"), json.dumps({"image_path": other_image, "mask_path": "/tmp/x.png"}), "Ok."))
    turn = rig.controller.chat(sid, "remove it")
    assert turn.steps[0].args == {"image_path": image, "mask_path": mask}
    assert other_sid != sid


def test_a_gesture_with_the_message_becomes_the_mask(rig: Rig) -> None:
    sid, image, _ = rig.session_with()
    use(rig, scripted(call("remove", image_path=image), "Removed what you clicked."))
    click = Click.model_validate({"points": [{"x": 250, "y": 300}]})
    turn = rig.controller.chat(sid, "remove this", click)
    assert [s.tool for s in turn.steps] == ["segment", "remove"]
    mask = turn.artifacts[0]
    assert mask.kind.value == "mask" and mask.parent == image
    assert turn.steps[1].args == {"image_path": image, "mask_path": mask.path}
    assert turn.steps[1].recovered == ["mask_path"]


# ---- errors -------------------------------------------------------------------------------


def test_a_tool_error_goes_back_to_the_llm_and_the_retry_is_bounded(rig: Rig) -> None:
    sid, image, _ = rig.session_with()
    before = rig.store.get(sid)
    BrokenTool.calls = 0
    model = scripted(*[call("broken", image_path=image)] * 6, "never reached")
    use(rig, model)
    turn = rig.controller.chat(sid, "sharpen the photo")
    assert BrokenTool.calls == 2  # the first try and one retry of the same call
    assert "broken tool could not do it" in turn.reply and "sorry" not in turn.reply.lower()
    retry_prompt = model.seen[1]
    assert isinstance(retry_prompt[-1], ToolMessage) and "failed" in retry_prompt[-1].text
    after = rig.store.get(sid)
    assert after.artifacts == before.artifacts and after.active_image == before.active_image


def test_after_an_error_the_llm_may_choose_another_tool(rig: Rig) -> None:
    sid, image, _ = rig.session_with()
    use(rig, scripted(call("broken", image_path=image), call("flip", image_path=image), "Flipped it instead."))
    turn = rig.controller.chat(sid, "improve the photo")
    assert [s.tool for s in turn.steps] == ["broken", "flip"]
    assert turn.reply == "Flipped it instead." and len(turn.artifacts) == 1


def test_an_unavailable_tool_says_what_to_configure(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    use(rig, scripted(call("replace", image_path=image, mask_path=mask, prompt="a red car"), "Done."))
    turn = rig.controller.chat(sid, "replace this with a red car")
    assert turn.reply == (
        "I can't replace objects on this server; I can remove it or cut it out, or an administrator can "
        "enable it (see /api/tools)."
    )
    assert turn.steps[0].observation.startswith("not run") and turn.artifacts == []
    assert "a_package_that_is_not_installed" in turn.steps[0].observation  # the detail stays in the step


def test_a_request_for_a_file_system_path_is_refused_without_reading_it(rig: Rig) -> None:
    sid, _, _ = rig.session_with(mask="dog_on_bench_mask.png")
    model = scripted("should not be asked")
    use(rig, model)
    before = rig.store.get(sid).artifacts
    turn = rig.controller.chat(sid, "read the text in /etc/passwd")
    assert "/etc/passwd" in turn.reply and turn.steps == [] and model.seen == []
    assert rig.store.get(sid).artifacts == before


@pytest.mark.parametrize("message", ["", "   ", "x" * (MAX_MESSAGE_CHARS + 1), "remove it " * 10_000])
def test_empty_and_huge_messages_are_refused_and_change_nothing(rig: Rig, message: str) -> None:
    sid, _, _ = rig.session_with()
    before = rig.store.get(sid)
    with pytest.raises(InvalidInput):
        rig.controller.chat(sid, message)
    with pytest.raises(InvalidInput):
        rig.controller.chat_events(sid, message)
    assert rig.store.get(sid) == before


# ---- no LLM, a broken LLM ---------------------------------------------------------------


def test_without_an_llm_the_auxiliary_control_carries_pointing_tasks(rig: Rig) -> None:
    sid, _image, _ = rig.session_with()
    click = Click.model_validate({"points": [{"x": 250, "y": 300}]})
    turn = rig.controller.chat(sid, "remove this", click)
    assert [s.tool for s in turn.steps] == ["segment", "remove"]
    assert turn.steps[1].recovered == ["image_path", "mask_path"]
    help_turn = rig.controller.chat(sid, "hello there")
    assert help_turn.steps == [] and "remove it" in help_turn.reply


def test_when_the_llm_is_down_pointing_still_works_and_the_rest_is_a_503(rig: Rig) -> None:
    sid, image, _mask = rig.session_with(mask="dog_on_bench_mask.png")
    use(rig, Down())
    turn = rig.controller.chat(sid, "remove it")
    assert turn.steps[0].tool == "remove" and turn.artifacts[0].parent == image
    assert "Connection refused" in turn.reply
    before = rig.store.get(sid)
    with pytest.raises(LLMUnavailable) as info:
        rig.controller.chat(sid, "tell me a joke")
    assert info.value.status == 503 and "Connection refused" in info.value.message
    assert rig.store.get(sid) == before


# ---- prompt, memory, undo, events -------------------------------------------------------


def test_the_scene_is_a_context_block_and_memory_is_bounded(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "data", llm={"provider": "none", "max_history_chars": 600})

    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    for i in range(12):
        rig.store.append_message(sid, "user", f"question number {i} " + "words " * 10)
        rig.store.append_message(sid, "assistant", f"answer number {i} " + "words " * 10)
    model = scripted("Hello!")
    use(rig, model)
    rig.controller.chat(sid, "hi")
    prompt = model.seen[0]
    assert isinstance(prompt[0], SystemMessage) and "remove:" in prompt[0].text
    assert not any(isinstance(m, SystemMessage) for m in prompt[1:])  # one system message
    assert f"active image: {image}" in prompt[0].text and "active selection (the mask" in prompt[0].text
    assert mask is not None and mask in prompt[0].text

    history = prompt[1:-1]
    assert 0 < len(history) < 24 and sum(len(m.text) for m in history) <= 600
    assert isinstance(history[0], HumanMessage) and "number 11" in history[-1].text
    assert prompt[-1].text == "hi"
    rig.close()


def test_tool_steps_are_remembered_as_calls_with_observations(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    use(rig, scripted(call("remove", image_path=image, mask_path=mask), "Removed."))
    rig.controller.chat(sid, "remove it")
    model = scripted("Sure.")
    use(rig, model)
    rig.controller.chat(sid, "thanks")
    history = model.seen[0][1:-1]
    # past turns are plain user/assistant text (every OpenAI-compatible server accepts it):
    # the tool step is folded into the assistant's turn with its observation
    assert [type(m).__name__ for m in history] == ["HumanMessage", "AIMessage"]
    assert history[1].text.startswith("[remove: Removed the selected object. New files: image/")
    assert history[1].text.endswith("Removed.")


def test_undo_restores_the_image_and_selection_before_the_last_edit(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    edited = rig.controller.chat(sid, "remove it").artifacts[0].path
    assert rig.store.get(sid).active_image == edited
    turn = rig.controller.chat(sid, "undo that")
    assert [s.tool for s in turn.steps] == ["undo"]
    state = rig.store.get(sid)
    assert (state.active_image, state.active_mask) == (image, mask)
    assert edited in [a.path for a in state.artifacts]  # artifacts are never deleted
    again = rig.controller.chat(sid, "undo")
    assert again.steps == [] and "nothing to undo" in again.reply


def test_events_stream_steps_tokens_then_the_reply(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    use(rig, scripted(call("remove", image_path=image, mask_path=mask), "All done."))
    events = list(rig.controller.chat_events(sid, "remove it"))
    names = [e for e, _ in events]
    assert names == ["step", "token", "reply", "done"]
    assert events[1][1] == {"text": "All done."}
    assert events[2][1]["reply"] == "All done." and events[2][1]["steps"][0]["tool"] == "remove"


def test_an_llm_failure_mid_stream_is_an_error_event(rig: Rig) -> None:
    sid, _, _ = rig.session_with()
    use(rig, Down())
    events = list(rig.controller.chat_events(sid, "tell me a joke"))
    assert [e for e, _ in events] == ["error", "done"]
    assert events[0][1]["error"]["code"] == "llm_unavailable"


def test_an_llm_that_writes_no_replies_is_not_asked_to_retry(rig: Rig) -> None:
    sid, image, _ = rig.session_with()
    BrokenTool.calls = 0
    model = scripted(*[call("broken", image_path=image)] * 4)
    rig.controller.llm = ChatLLM(model=model, label="weak", writes_replies=False)
    turn = rig.controller.chat(sid, "sharpen the photo")
    assert BrokenTool.calls == 1 and len(model.seen) == 1
    assert turn.reply.startswith("The broken tool could not do it") and "failed" in turn.reply
