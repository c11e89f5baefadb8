"""The correction rules of the auxiliary control, one by one, on a real session store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from igpt_server.controller.parse import parse_request
from igpt_server.controller.recovery import AuxiliaryControl, grounded, tool_fields
from igpt_server.controller.scene import Scene
from igpt_server.perception.gestures import Box, Click, Drag, Stroke
from igpt_server.store import ArtifactKind
from tests.controller_support import CountArgs, MoveArgs, Rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path / "data")
    yield rig
    rig.close()


def square(size: int, x0: int, y0: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def correct(rig: Rig, sid: str, tool: str, args: dict, message: str, gesture=None, **kw):  # type: ignore[no-untyped-def]
    aux = AuxiliaryControl(rig.registry)
    return aux.correct(tool, args, parse_request(message), Scene(rig.store.get(sid)), gesture, **kw)


# ---- step 1: identify ---------------------------------------------------------------------


def test_the_words_confirm_the_llms_tool(rig: Rig) -> None:
    choice = AuxiliaryControl(rig.registry).identify("remove", parse_request("erase it"))
    assert (choice.tool, choice.source) == ("remove", "llm+lexicon")


def test_the_words_replace_a_tool_they_do_not_name(rig: Rig) -> None:
    choice = AuxiliaryControl(rig.registry).identify("flip", parse_request("remove it"))
    assert (choice.tool, choice.source) == ("remove", "lexicon")


def test_an_invented_or_missing_tool_is_replaced_by_the_words(rig: Rig) -> None:
    aux = AuxiliaryControl(rig.registry)
    assert aux.identify("magic_eraser", parse_request("remove it")).tool == "remove"
    assert aux.identify(None, parse_request("undo that")).tool == "undo"


def test_an_invented_tool_with_no_words_is_no_tool(rig: Rig) -> None:
    choice = AuxiliaryControl(rig.registry).identify("magic_eraser", parse_request("do your thing"))
    assert choice.tool is None and "magic_eraser" in choice.reason


def test_a_trusted_llm_may_pick_a_tool_the_words_do_not_name(rig: Rig) -> None:
    aux = AuxiliaryControl(rig.registry)
    assert aux.identify("flip", parse_request("mirror the photo")).tool == "flip"
    assert aux.identify("flip", parse_request("mirror the photo"), trust_llm=False).tool is None


def test_pointing_refines_the_tool(rig: Rig) -> None:
    aux = AuxiliaryControl(rig.registry)
    click = Click.model_validate({"points": [{"x": 10, "y": 10}]})
    assert aux.identify(None, parse_request("select this"), click).tool == "segment"
    drag = Drag(start=(10, 10), end=(50, 10))
    assert aux.identify(None, parse_request("over there"), drag).tool == "move"


def test_a_tool_that_is_registered_but_unavailable_is_still_identified(rig: Rig) -> None:
    assert not rig.registry.info("replace").available
    assert AuxiliaryControl(rig.registry).identify(None, parse_request("replace it with a cat")).tool == "replace"


# ---- step 2: keep only answers that name real artifacts -----------------------------------


def test_answers_must_name_artifacts_of_this_session_of_the_right_kind(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    other_sid, other_image, _ = rig.session_with()
    aux = AuxiliaryControl(rig.registry)
    scene = Scene(rig.store.get(sid))
    assert [f.name for f in aux.missing_artifacts("remove", {"image_path": image}, scene)] == ["mask_path"]
    kept = aux.accept_answer("remove", {"image_path": other_image, "mask_path": mask}, scene)
    assert kept == {"mask_path": mask}
    assert aux.accept_answer("remove", {"image_path": mask, "mask_path": image}, scene) == {}
    assert aux.accept_answer("remove", {"image_path": "/etc/passwd", "mask_path": "../x.png"}, scene) == {}
    assert aux.accept_answer("remove", {"image_path": image, "mask_path": mask}, scene) == {
        "image_path": image,
        "mask_path": mask,
    }
    assert other_sid != sid


# ---- step 3: the rules --------------------------------------------------------------------


def test_a_missing_image_is_the_active_image_and_it_is_the_selection(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    fixed = correct(rig, sid, "remove", {}, "remove it")
    assert fixed.problem is None
    assert fixed.args == {"image_path": image, "mask_path": mask}
    assert fixed.recovered == ["image_path", "mask_path"]


def test_invented_paths_are_replaced(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    fixed = correct(
        rig, sid, "remove", {"image_path": "../../etc/passwd", "mask_path": "mask/deadbeef_x.png"}, "erase it"
    )
    assert fixed.args == {"image_path": image, "mask_path": mask}
    assert fixed.recovered == ["image_path", "mask_path"]


def test_it_means_the_active_selection_even_when_the_llm_names_another_mask(rig: Rig) -> None:
    sid, image, selection = rig.session_with(mask="dog_on_bench_mask.png")
    older = rig.add_mask(sid, image, square(512, 0, 0, 50), select=False)
    fixed = correct(rig, sid, "remove", {"image_path": image, "mask_path": older}, "remove the masked object")
    assert fixed.args["mask_path"] == selection and fixed.recovered == ["mask_path"]


def test_the_llms_valid_mask_stands_when_the_words_point_at_nothing(rig: Rig) -> None:
    sid, image, _ = rig.session_with(mask="dog_on_bench_mask.png")
    older = rig.add_mask(sid, image, square(512, 0, 0, 50), select=False)
    fixed = correct(rig, sid, "remove", {"image_path": image, "mask_path": older}, "remove the lamp")
    assert fixed.args["mask_path"] == older and fixed.recovered == []


def test_the_other_one_is_the_other_mask(rig: Rig) -> None:
    sid, image, first = rig.session_with(mask="dog_on_bench_mask.png")
    second = rig.add_mask(sid, image, square(512, 0, 0, 50))
    fixed = correct(rig, sid, "remove", {}, "remove the other one")
    assert fixed.args["mask_path"] == first
    assert second != first


def test_the_other_one_after_an_edit_fits_the_edited_image(rig: Rig) -> None:
    """Two objects selected; "remove it" removed one; "the other one" is the unused mask,
    applied to the edited image (an edit of its parent, same size)."""
    sid, image, first = rig.session_with(mask="dog_on_bench_mask.png")
    second = rig.add_mask(sid, image, square(512, 0, 0, 50))
    done = rig.runner.call(sid, "remove", {"image_path": image, "mask_path": second}, record=False)
    rig.store.append_message(sid, "tool", done.text, {"tool": "remove", "args": {"mask_path": second}})
    edited = done.artifacts[0].path
    fixed = correct(rig, sid, "remove", {"image_path": image}, "remove the other one too")
    assert fixed.args == {"image_path": edited, "mask_path": first}
    assert fixed.recovered == ["image_path", "mask_path"]


def test_a_masks_image_is_its_parent(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    _, _, _ = rig.session_with()
    other = rig.store.add_artifact(
        sid,
        ArtifactKind.image,
        (Path(__file__).parents[1] / "data" / "truck.jpg").read_bytes(),
        ext="jpg",
        stem="truck",
        width=1000,
        height=667,
    ).path
    rig.store.update_state(sid, active_image=other, active_mask=None)
    fixed = correct(rig, sid, "remove", {"image_path": other, "mask_path": mask}, "remove the dog")
    assert fixed.args == {"image_path": image, "mask_path": mask}
    assert fixed.recovered == ["image_path"]


def test_sizes_must_match(rig: Rig) -> None:
    """An image of another size is never paired with a mask: the mask's parent is used."""
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    scene = Scene(rig.store.get(sid))
    assert scene.same_size(image, mask)
    truck = rig.store.add_artifact(
        sid,
        ArtifactKind.image,
        (Path(__file__).parents[1] / "data" / "truck.jpg").read_bytes(),
        ext="jpg",
        stem="truck",
        parent=image,
        width=1000,
        height=667,
    ).path
    rig.store.update_state(sid, active_image=truck, active_mask=mask)
    fixed = correct(rig, sid, "remove", {"image_path": truck}, "remove it")
    assert fixed.args == {"image_path": image, "mask_path": mask}


def test_nothing_selected_asks_to_point(rig: Rig) -> None:
    sid, _, _ = rig.session_with()
    fixed = correct(rig, sid, "remove", {}, "remove it")
    assert fixed.problem is not None and "Click it" in fixed.problem and fixed.problem.endswith("again.")


def test_no_image_asks_for_an_upload(rig: Rig) -> None:
    sid = rig.store.create().id
    fixed = correct(rig, sid, "flip", {}, "flip it")
    assert fixed.problem is not None and "upload" in fixed.problem


def test_a_gesture_becomes_the_mask_through_segment_first(rig: Rig) -> None:
    sid, image, _ = rig.session_with(mask="dog_on_bench_mask.png")
    click = Click.model_validate({"points": [{"x": 120, "y": 300, "label": 1}]})
    first = correct(rig, sid, "remove", {}, "remove this", click)
    assert first.segment_first == {"image_path": image, "gesture": click.model_dump(mode="json")}
    made = rig.runner.call(sid, "segment", first.segment_first).artifacts[0].path
    second = correct(rig, sid, "remove", {}, "remove this", click, gesture_mask=made)
    assert second.args == {"image_path": image, "mask_path": made} and second.problem is None


def test_a_drag_moves_the_selection_by_its_vector(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    drag = Drag(start=(200, 300), end=(260, 280))
    fixed = correct(rig, sid, "move", {"dx": 5}, "put it there", drag)
    assert fixed.args == {"image_path": image, "mask_path": mask, "dx": 60, "dy": -20}
    assert set(fixed.recovered) == {"image_path", "mask_path", "dx", "dy"}


def test_a_drag_without_a_selection_picks_up_what_lies_under_its_start(rig: Rig) -> None:
    sid, _image, _ = rig.session_with()
    fixed = correct(rig, sid, "move", {}, "move this", Drag(start=(200, 300), end=(260, 280)))
    assert fixed.segment_first is not None
    assert fixed.segment_first["gesture"] == {"type": "click", "points": [{"x": 200.0, "y": 300.0, "label": 1}]}


def test_a_gesture_goes_into_the_region_field_of_a_tool_that_has_one(rig: Rig) -> None:
    sid, image, _ = rig.session_with(mask="dog_on_bench_mask.png")
    box = Box(x0=10, y0=20, x1=100, y1=200)
    fixed = correct(rig, sid, "count", {}, "how bright is it here", box)
    assert fixed.args == {"image_path": image, "region": box.model_dump(mode="json")}
    assert fixed.segment_first is None


def test_an_optional_mask_is_used_only_when_the_words_point_at_the_selection(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    assert correct(rig, sid, "count", {"mask_path": mask}, "count the bright pixels").args == {"image_path": image}
    assert correct(rig, sid, "count", {}, "count the bright pixels in the selection").args == {
        "image_path": image,
        "mask_path": mask,
    }


def test_a_gesture_outside_the_image_is_refused(rig: Rig) -> None:
    sid, _, _ = rig.session_with()
    stroke = Stroke(points=[(10, 10), (900, 10)], width=5)
    fixed = correct(rig, sid, "remove", {}, "remove this", stroke)
    assert fixed.problem is not None and "outside" in fixed.problem


def test_words_give_direction_and_scale(rig: Rig) -> None:
    sid, _image, _mask = rig.session_with(mask="dog_on_bench_mask.png")
    left = correct(rig, sid, "move", {"dx": 30}, "move it to the left")
    assert left.args["dx"] < 0 and left.args["dy"] == 0 and "dx" in left.recovered
    bigger = correct(rig, sid, "move", {"scale": 0.5}, "now make it bigger")
    assert bigger.args["scale"] == 1.25 and "scale" in bigger.recovered
    kept = correct(rig, sid, "move", {"scale": 1.8}, "now make it bigger")
    assert kept.args["scale"] == 1.8 and "scale" not in kept.recovered


def test_the_prompt_comes_from_the_words_unless_the_llms_is_grounded_in_them(rig: Rig) -> None:
    sid, _, _ = rig.session_with(mask="dog_on_bench_mask.png")
    invented = correct(rig, sid, "replace", {"prompt": "pick a tool"}, "replace this with a red car")
    assert invented.args["prompt"] == "a red car" and "prompt" in invented.recovered
    grounded_prompt = correct(rig, sid, "replace", {"prompt": "red car"}, "replace this with a red car")
    assert grounded_prompt.args["prompt"] == "red car" and "prompt" not in grounded_prompt.recovered
    missing = correct(rig, sid, "replace", {}, "replace this")
    assert missing.problem is not None and "prompt" in missing.problem


def test_unknown_and_mistyped_arguments_are_dropped(rig: Rig) -> None:
    sid, _image, _mask = rig.session_with(mask="dog_on_bench_mask.png")
    fixed = correct(rig, sid, "move", {"speed": 3, "dx": "far", "dy": float("nan")}, "move it")
    assert "speed" not in fixed.args and "dx" not in fixed.args and "dy" not in fixed.args


def test_a_path_named_in_the_message_is_used_or_refused(rig: Rig) -> None:
    sid, image, selection = rig.session_with(mask="dog_on_bench_mask.png")
    older = rig.add_mask(sid, image, square(512, 0, 0, 50), select=False)
    named = correct(rig, sid, "remove", {}, f"remove {older}")
    assert named.args["mask_path"] == older
    refused = correct(rig, sid, "remove", {}, "remove /etc/passwd")
    assert refused.problem is not None and "/etc/passwd" in refused.problem
    foreign_sid, foreign_image, _ = rig.session_with()
    foreign = correct(rig, sid, "flip", {}, f"flip {foreign_image}")
    assert foreign.problem is not None and "not a file of this session" in foreign.problem
    assert foreign_sid != sid and selection


def test_fields_are_classified_from_the_args_model() -> None:
    fields = tool_fields(CountArgs)
    assert [f.name for f in fields.artifacts] == ["mask_path", "image_path"]
    assert fields.gestures == {"region": (Click, Box, Stroke)}
    assert tool_fields(MoveArgs).numbers == ("dx", "dy", "scale")


def test_grounded_means_every_content_word_was_said() -> None:
    assert grounded("a red car", "replace this with a red car")
    assert grounded("red cars", "replace this with a red car")
    assert not grounded("pick a tool", "replace this with a red car")


def test_a_stroke_goes_into_a_list_of_strokes(rig: Rig) -> None:
    from pydantic import Field

    from igpt_server.controller.recovery import tool_fields as fields_of
    from igpt_server.tooling.interface import ImagePath, ToolArgs

    class StrokesArgs(ToolArgs):
        image_path: ImagePath
        strokes: list[Stroke] = Field(min_length=1)

    fields = fields_of(StrokesArgs)
    assert fields.gestures == {"strokes": (Stroke,)} and fields.gesture_lists == {"strokes"}
    args: dict = {}
    stroke = Stroke(points=[(1, 1), (5, 5)], width=3)
    assert AuxiliaryControl._gesture_fields(fields, args, stroke)
    assert args == {"strokes": [stroke.model_dump(mode="json")]}


def test_a_placement_list_gets_the_newest_material_centred_on_the_click(rig: Rig) -> None:
    from pydantic import Field

    from igpt_server.controller.recovery import tool_fields as fields_of
    from igpt_server.tooling.interface import ImagePath, MaterialPath, ToolArgs

    class Place(ToolArgs):
        material_path: MaterialPath
        x: float = 0.0
        y: float = 0.0

    class PasteArgs(ToolArgs):
        materials: list[Place] = Field(min_length=1)
        image_path: ImagePath | None = None

    fields = fields_of(PasteArgs)
    assert set(fields.placements) == {"materials"} and fields.placements["materials"].field == "material_path"
    sid, image, _ = rig.session_with()
    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    from igpt_server import media

    material = rig.store.add_artifact(
        sid, ArtifactKind.material, media.encode_png(rgba), ext="png", stem="cutout", parent=image, width=60, height=40
    ).path
    rig.store.update_state(sid, add_material=material)
    args: dict = {"materials": [{"material_path": "material/00000000_nope.png"}]}
    scene = Scene(rig.store.get(sid))
    click = Click.model_validate({"points": [{"x": 100, "y": 200}]})
    AuxiliaryControl._placements(fields, args, parse_request("paste the cut-out here"), scene, click)
    assert args["materials"] == [{"material_path": material, "x": 70.0, "y": 180.0}]
