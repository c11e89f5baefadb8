"""Everyday requests through the agent with no LLM: the words (the tools' own, WordNet's and
the general vocabulary) route them, scope and negation never edit the wrong region, text is
a target without pointing, replies are for people, and a turn the rules decide makes no
model call."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from igpt_server import media
from igpt_server.controller import ChatLLM
from igpt_server.controller.agent import MAX_ROUNDS
from igpt_server.perception.gestures import Box, Click
from tests.controller_support import DATA, Rig

PATH = re.compile(r"(image|mask|material|sketch)/[0-9a-f]{8}_")
DOG_BOX = Box(type="box", x0=140, y0=170, x1=400, y1=470)


class Counting(FakeMessagesListChatModel):
    """A scripted LLM that counts how often it is called."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, stop, run_manager, **kw)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path / "data")
    yield rig
    rig.close()


def pixels(rig: Rig, sid: str, path: str) -> np.ndarray:
    return media.read_image_rgb(rig.store.artifact_file(sid, path))


def click(x: int, y: int) -> Click:
    return Click.model_validate({"points": [{"x": x, "y": y, "label": 1}]})


# ---- the failures the issue lists -----------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "tools"),
    [
        ("make the truck disappear", ["segment", "remove"]),
        ("crop to the dog", ["segment", "crop"]),
        ("crop the picture around this", ["segment", "crop"]),
        ("copy the truck", ["segment", "extract"]),
        ("zap it", None),  # no word of any vocabulary: asked back, nothing runs
    ],
)
def test_everyday_requests_with_a_click(rig: Rig, message: str, tools: list[str] | None) -> None:
    sid, _, _ = rig.session_with()
    turn = rig.controller.chat(sid, message, click(250, 300))
    if tools is None:
        assert turn.steps == [] and turn.reply.startswith("What should I do?")
    else:
        assert [s.tool for s in turn.steps] == tools
        assert {s.chosen_by for s in turn.steps} == {"rules"}


def test_blur_the_background_keeps_the_selected_object_untouched(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    turn = rig.controller.chat(sid, "blur the background")
    assert [s.tool for s in turn.steps] == ["adjust"]
    assert turn.steps[0].args["region"] == "background" and turn.steps[0].args["effect"] == "blur"
    assert turn.steps[0].args["mask_path"] == mask
    before, after = pixels(rig, sid, image), pixels(rig, sid, turn.artifacts[0].path)
    dog = media.read_mask(DATA / "dog_on_bench_mask.png")
    assert np.array_equal(before[dog], after[dog])  # the dog is never touched
    assert not np.array_equal(before[~dog], after[~dog])


@pytest.mark.parametrize("message", ["erase everything but the dog", "keep only this", "remove the background"])
def test_everything_but_the_object_is_a_cut_out_never_an_edit_of_the_object(rig: Rig, message: str) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    turn = rig.controller.chat(sid, message)
    assert [s.tool for s in turn.steps] == ["extract"]
    assert turn.steps[0].args["mask_path"] == mask
    state = rig.store.get(sid)
    assert state.active_image == image  # the photo is as it was
    assert state.materials and "cut-out #1" in turn.reply


def test_grey_out_everything_except_what_was_pointed_at(rig: Rig) -> None:
    sid, _, _ = rig.session_with()
    turn = rig.controller.chat(sid, "grey out everything except this", DOG_BOX)
    assert [s.tool for s in turn.steps] == ["segment", "adjust"]
    assert turn.steps[1].args["effect"] == "desaturate" and turn.steps[1].args["region"] == "background"
    assert turn.steps[1].args["mask_path"] == turn.steps[0].observation.split("New files: ")[1].rstrip(".")


def test_select_everything_but_this_inverts_the_selection(rig: Rig) -> None:
    sid, _image, _mask = rig.session_with(mask="dog_on_bench_mask.png")
    turn = rig.controller.chat(sid, "select everything but this")
    assert [s.tool for s in turn.steps] == ["invert_selection"]
    inverted = media.read_mask(rig.store.artifact_file(sid, rig.store.get(sid).active_mask or ""))
    assert np.array_equal(inverted, ~media.read_mask(DATA / "dog_on_bench_mask.png"))


@pytest.mark.parametrize("message", ["blur the background", "erase everything but the dog", "darken the rest"])
def test_a_scope_without_anything_to_keep_is_asked_back(rig: Rig, message: str) -> None:
    sid, _, _ = rig.session_with()
    before = rig.store.get(sid)
    turn = rig.controller.chat(sid, message)
    assert turn.steps == [] and turn.reply.startswith("Which part should stay untouched?")
    after = rig.store.get(sid)
    assert (after.active_image, after.artifacts) == (before.active_image, before.artifacts)


def test_a_negated_request_runs_nothing(rig: Rig) -> None:
    sid, _, _ = rig.session_with(mask="dog_on_bench_mask.png")
    turn = rig.controller.chat(sid, "don't remove the dog")
    assert turn.steps == [] and turn.reply.startswith("You said not to remove")


def test_the_effect_comes_from_the_words(rig: Rig) -> None:
    sid, _, mask = rig.session_with(mask="dog_on_bench_mask.png")
    turn = rig.controller.chat(sid, "pixelate it")
    assert turn.steps[0].args == {
        "image_path": turn.steps[0].args["image_path"],
        "mask_path": mask,
        "effect": "pixelate",
    }
    darker = rig.controller.chat(sid, "make it darker")
    assert darker.steps[0].tool == "adjust" and darker.steps[0].args["effect"] == "darken"


@pytest.mark.slow
def test_erase_the_text_with_nothing_pointed_selects_the_words_then_removes_them(rig: Rig) -> None:
    sid, image, _ = rig.session_with("unwant_text.jpg")
    turn = rig.controller.chat(sid, "erase the text")
    assert [s.tool for s in turn.steps] == ["text_mask", "remove"]
    text_mask = next(a for a in turn.artifacts if a.kind.value == "mask")
    assert turn.steps[1].args == {"image_path": image, "mask_path": text_mask.path}


# ---- replies for people, who decided, no wasted model calls ---------------------------------


def test_replies_name_images_by_number_and_never_by_path(rig: Rig) -> None:
    sid, _, _ = rig.session_with()
    for message, gesture in [("remove this", click(250, 300)), ("crop to it", click(100, 100)), ("undo", None)]:
        turn = rig.controller.chat(sid, message, gesture)
        assert not PATH.search(turn.reply), turn.reply
        assert all(PATH.search(s.observation) or s.tool == "undo" for s in turn.steps)  # steps keep paths
    assert "image #" in rig.controller.chat(sid, "redo").reply


def test_a_turn_the_rules_decide_never_calls_an_untrusted_llm(rig: Rig) -> None:
    sid, _, _ = rig.session_with(mask="dog_on_bench_mask.png")
    model = Counting(responses=[AIMessage(content="never used")])
    rig.controller.llm = ChatLLM(model=model, label="weak", writes_replies=False, trusted_tools=False)
    turn = rig.controller.chat(sid, "remove it")
    assert [s.tool for s in turn.steps] == ["remove"] and model.seen == []
    assert turn.steps[0].chosen_by == "rules"


def test_the_llms_confirmed_choice_is_llm_plus_rules(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    call = {"name": "remove", "args": {"image_path": image, "mask_path": mask}, "id": "c1"}
    model = Counting(responses=[AIMessage(content="", tool_calls=[call]), AIMessage(content="Done.")])
    rig.controller.llm = ChatLLM.of(model)
    turn = rig.controller.chat(sid, "remove it")
    assert turn.steps[0].chosen_by == "llm+rules" and turn.reply == "Done."


def test_an_llm_that_loops_is_bounded(rig: Rig) -> None:
    sid, image, _ = rig.session_with()
    calls = [
        AIMessage(content="", tool_calls=[{"name": "flip", "args": {"image_path": image, "n": i}, "id": f"c{i}"}])
        for i in range(12)
    ]
    model = Counting(responses=calls)
    rig.controller.llm = ChatLLM.of(model)
    turn = rig.controller.chat(sid, "improve the photo")
    assert len(model.seen) <= MAX_ROUNDS and len(turn.steps) <= MAX_ROUNDS


@pytest.mark.parametrize("message", ["entferne den Hund bitte", "run the magic_eraser tool", "asdf qwer zxcv"])
def test_words_that_name_no_tool_are_asked_back(rig: Rig, message: str) -> None:
    sid, _, _ = rig.session_with(mask="dog_on_bench_mask.png")
    turn = rig.controller.chat(sid, message)
    assert turn.steps == [] and turn.reply.endswith("or 'undo'.")
