"""vqa and caption: region referring (ChatSpot's <box>), the transformers backend on a tiny
random LLaVA, the OpenAI-compatible backend against a real HTTP server on 127.0.0.1, and the
background caption of uploads.

The tiny LLaVA's words mean nothing, so its answers are compared with ``generate`` called
directly on the same saved model. The HTTP server below is a real server speaking the chat
completions protocol: it decodes the images it receives and answers with what it saw, so the
tests check what actually went over the wire.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from igpt_server import media
from igpt_server.errors import InvalidInput
from igpt_server.perception.gestures import Box, Click, ClickPoint
from igpt_server.settings import Settings, VisionSettings
from igpt_tools.vqa import (
    OpenAiVisionBackend,
    VlmBackend,
    box_tag,
    latest_caption,
    masked_crop,
    normalised_box,
    point_tag,
    region_query,
)
from tests.helpers import DATA, make_client, new_session, upload
from tests.tiny_perception import tiny_vlm

TEMPLATE = "{question}\nRegion: {region}.{crop_note}"


# region referring -----------------------------------------------------------------------------


def test_a_box_is_written_the_chatspot_way_normalised_to_the_image() -> None:
    box = normalised_box((105, 170, 310, 450), width=500, height=500)
    assert box == [0.21, 0.34, 0.62, 0.9]
    assert box_tag(box) == "<box>[[0.21, 0.34, 0.62, 0.9]]</box>"
    assert point_tag([[0.41, 0.52], [0.6, 0.1]]) == "<point>[[0.41, 0.52], [0.6, 0.1]]</point>"
    assert normalised_box((-5, 0, 900, 10), width=800, height=100) == [0.0, 0.0, 1.0, 0.1]


def test_the_masked_crop_holds_the_region_with_a_margin_and_dims_the_rest() -> None:
    image = np.full((100, 200, 3), 90, np.uint8)
    mask = np.zeros((100, 200), bool)
    mask[40:60, 100:140] = True
    crop = masked_crop(image, mask)
    assert crop.shape == (26, 52, 3)  # the 20x40 box plus 15 % on each side
    assert (crop[3:23, 6:46] == 90).all() and (crop[0] == 30).all() and (crop[:, 0] == 30).all()
    with pytest.raises(InvalidInput, match="selects no pixel"):
        masked_crop(image, np.zeros_like(mask))


def test_a_question_about_a_mask_carries_its_box_and_its_crop() -> None:
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    mask = media.read_mask(DATA / "dog_on_bench_mask.png")
    query = region_query(TEMPLATE, "What is it?", image, mask=mask)
    rows, cols = np.nonzero(mask)
    bbox = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    expected = normalised_box(bbox, image.shape[1], image.shape[0])
    assert query.instruction.startswith("What is it?\nRegion: " + box_tag(expected))
    assert "second image" in query.instruction and len(query.images) == 2
    np.testing.assert_array_equal(query.images[1], masked_crop(image, mask))
    assert query.region == {"box": expected}
    alone = region_query(TEMPLATE, "What is it?", image, mask=mask, send_crop=False)
    assert len(alone.images) == 1 and "second image" not in alone.instruction


def test_clicks_are_referred_to_by_their_points_and_boxes_by_their_box() -> None:
    image = np.zeros((200, 400, 3), np.uint8)
    click = Click(points=[ClickPoint(x=100, y=50), ClickPoint(x=300, y=150, label=0)])
    query = region_query(TEMPLATE, "What colour?", image, region=click)
    assert "<point>[[0.25, 0.25]]</point>" in query.instruction  # include points only
    assert query.images[1].shape[2] == 3 and (query.images[1][..., 0] == 255).any()  # the marked window
    boxed = region_query(TEMPLATE, "What colour?", image, region=Box(x0=40, y0=20, x1=200, y1=100))
    assert "<box>[[0.1, 0.1, 0.5, 0.5]]</box>" in boxed.instruction
    plain = region_query(TEMPLATE, "How many dogs?", image)
    assert plain.instruction == "How many dogs?" and len(plain.images) == 1


# configuration ------------------------------------------------------------------------------


def test_without_a_model_or_endpoint_both_backends_say_what_to_configure(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, model_dir=tmp_path / "models")
    vlm_reason = VlmBackend().unavailable_reason(settings)
    assert vlm_reason is not None and str(tmp_path / "models" / "vlm") in vlm_reason
    endpoint_reason = OpenAiVisionBackend().unavailable_reason(settings)
    assert endpoint_reason is not None and "IGPT_VISION__BASE_URL" in endpoint_reason


# the transformers backend on a tiny LLaVA -----------------------------------------------------


@pytest.fixture(scope="module")
def vlm_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("vlm-api")
    settings = {"vision": VisionSettings(caption_uploads=False, max_tokens=12), "devices": {"vqa": "cpu"}}
    with make_client(root, model_dir=tiny_vlm(), **settings) as client:
        yield client


def reference_answer(instruction: str, images: list[np.ndarray], max_tokens: int = 12) -> str:
    """What the saved model says, by transformers alone."""
    folder = tiny_vlm() / "vlm"
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": instruction}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(images=[Image.fromarray(i) for i in images], text=prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
    return str(processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]).strip()


def test_a_region_question_runs_the_vlm_with_the_box_and_the_crop(vlm_client: TestClient) -> None:
    tools = {t["name"]: t for t in vlm_client.get("/api/tools").json()}
    assert tools["vqa"]["backend"] == "vlm" and tools["caption"]["backend"] == "vlm"
    session = new_session(vlm_client)
    image = upload(vlm_client, session, "dog_on_bench.png")["path"]
    mask = upload(vlm_client, session, "dog_on_bench_mask.png", kind="mask", parent=image)["path"]
    args = {"image_path": image, "question": "What animal is this?", "mask_path": mask}
    response = vlm_client.post("/api/tools/vqa", json={"session": session, "args": args})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (
        data["instruction"].startswith("What animal is this?") and box_tag(data["region"]["box"]) in data["instruction"]
    )
    pixels = media.read_image_rgb(DATA / "dog_on_bench.png")
    crop = masked_crop(pixels, media.read_mask(DATA / "dog_on_bench_mask.png"))
    assert data["answer"] == reference_answer(data["instruction"], [pixels, crop])
    models = {m["key"]: m for m in vlm_client.get("/api/models").json()}
    assert models["vqa.vlm"]["loaded"] and models["vqa.vlm"]["dtype"] == "fp32" and models["vqa.vlm"]["device"] == "cpu"


def test_a_caption_runs_the_vlm_on_the_whole_image(vlm_client: TestClient) -> None:
    session = new_session(vlm_client)
    image = upload(vlm_client, session, "corgi.jpeg")["path"]
    response = vlm_client.post("/api/tools/caption", json={"session": session, "args": {"image_path": image}})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = reference_answer("Describe this image in one sentence.", [media.read_image_rgb(DATA / "corgi.jpeg")])
    assert body["data"]["caption"] == expected and body["text"] == f"Caption of {image}: {expected}"


def test_bad_questions_are_refused_before_the_model_runs(vlm_client: TestClient) -> None:
    session = new_session(vlm_client)
    image = upload(vlm_client, session, "dog.jpg")["path"]
    other = upload(vlm_client, session, "dog_on_bench.png")["path"]
    wrong_size = upload(vlm_client, session, "dog_on_bench_mask.png", kind="mask", parent=other)["path"]
    cases = [
        ({"image_path": image, "question": "x" * 10_000}, "question"),
        ({"image_path": image, "question": "what?", "mask_path": wrong_size}, "use a mask made for this image"),
        (
            {"image_path": image, "question": "what?", "region": {"type": "box", "x0": 0, "y0": 0, "x1": 1e5, "y1": 9}},
            "outside",
        ),
    ]
    for args, words in cases:
        response = vlm_client.post("/api/tools/vqa", json={"session": session, "args": args})
        assert response.status_code == 422 and words in response.json()["error"]["message"], response.text


# the OpenAI-compatible backend against a real server ---------------------------------------------


class VisionServer(ThreadingHTTPServer):
    """A chat-completions server on 127.0.0.1 that answers with what it received."""

    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: VisionServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.server.status != 200:
            self._send(self.server.status, {"error": {"message": "this model does not accept images", "type": "x"}})
            return
        content = body["messages"][0]["content"]
        texts = [c["text"] for c in content if c["type"] == "text"]
        sizes = []
        for part in (c for c in content if c["type"] == "image_url"):
            header, payload = part["image_url"]["url"].split(",", 1)
            assert header == "data:image/jpeg;base64"
            sizes.append(list(Image.open(io.BytesIO(base64.b64decode(payload))).size))
        answer = f"{len(sizes)} images {sizes}; asked: {texts[0]}"
        self._send(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[VisionServer]:
    srv = VisionServer()
    yield srv
    srv.stop()


def endpoint_client(root: Path, base_url: str, **vision: Any) -> TestClient:
    settings = VisionSettings(base_url=base_url, model="tiny-vl", api_key="k-123", timeout_s=5, **vision)  # type: ignore[arg-type]
    return make_client(root, vision=settings)


def test_a_region_question_goes_to_the_endpoint_as_text_and_two_jpeg_data_urls(
    server: VisionServer, tmp_path: Path
) -> None:
    with endpoint_client(tmp_path, server.base_url, caption_uploads=False) as client:
        assert {t["name"]: t for t in client.get("/api/tools").json()}["vqa"]["backend"] == "openai-vision"
        session = new_session(client)
        image = upload(client, session, "truck.jpg")["path"]  # 1800x1200: sent at 1536x1024
        box = {"type": "box", "x0": 450, "y0": 300, "x1": 1350, "y1": 900}
        args = {"image_path": image, "question": "What is written on it?", "region": box}
        response = client.post("/api/tools/vqa", json={"session": session, "args": args})
    assert response.status_code == 200, response.text
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k-123"
    assert request["body"]["model"] == "tiny-vl" and request["body"]["max_tokens"] == 256
    instruction = "What is written on it?\nThe question is about the region <box>[[0.25, 0.25, 0.75, 0.75]]</box>"
    answer = response.json()["text"]
    assert answer.startswith("2 images [[1536, 1024], [1170, 780]]; asked: " + instruction)


def test_an_endpoint_that_is_down_is_a_503_naming_it(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    base_url = f"http://127.0.0.1:{port}/v1"
    with endpoint_client(tmp_path, base_url, caption_uploads=False) as client:
        session = new_session(client)
        image = upload(client, session, "dog.jpg")["path"]
        response = client.post("/api/tools/caption", json={"session": session, "args": {"image_path": image}})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "vision_endpoint_down" and base_url in error["message"]
        assert client.get("/api/health").status_code == 200


def test_an_endpoint_error_is_a_503_with_its_message(tmp_path: Path) -> None:
    refusing = VisionServer(status=400)
    try:
        with endpoint_client(tmp_path, refusing.base_url, caption_uploads=False) as client:
            session = new_session(client)
            image = upload(client, session, "dog.jpg")["path"]
            response = client.post("/api/tools/caption", json={"session": session, "args": {"image_path": image}})
    finally:
        refusing.stop()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "vision_endpoint_error"
    assert (
        "400" in response.json()["error"]["message"] and "does not accept images" in response.json()["error"]["message"]
    )


# the background caption of uploads ---------------------------------------------------------------


def test_an_uploaded_image_is_captioned_once_in_the_background(server: VisionServer, tmp_path: Path) -> None:
    with endpoint_client(tmp_path, server.base_url) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        session = new_session(client)
        image = upload(client, session, "corgi.jpeg")["path"]  # the upload route starts the caption
        deadline = time.monotonic() + 30
        while (caption := latest_caption(services.store.get(session), image)) is None:
            assert time.monotonic() < deadline, "the upload was not captioned within 30 s"
            time.sleep(0.05)
        state = services.store.get(session)
    assert caption is not None and caption.startswith("1 images") and "Describe this image" in caption
    assert latest_caption(state, image) == caption
    events = [m for m in state.messages if m.data.get("event") == "caption"]
    assert len(events) == 1 and events[0].role == "event" and events[0].data["image_path"] == image
    assert not any(m.data.get("tool") == "caption" for m in state.messages)  # not a tool step of the chat


def test_no_background_caption_when_switched_off_or_unavailable(server: VisionServer, tmp_path: Path) -> None:
    with endpoint_client(tmp_path / "off", server.base_url, caption_uploads=False) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        session = new_session(client)
        image = upload(client, session, "dog.jpg")["path"]
        assert services.after_image_upload(session, image)["caption"].result(timeout=30) is None
        assert latest_caption(services.store.get(session), image) is None
    with make_client(tmp_path / "none") as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        session = new_session(client)
        assert "caption" not in services.after_image_upload(session, upload(client, session, "dog.jpg")["path"])
    assert server.requests == []


def test_a_failed_background_caption_leaves_the_session_unchanged(tmp_path: Path) -> None:
    refusing = VisionServer(status=500)
    try:
        with endpoint_client(tmp_path, refusing.base_url) as client:
            services = client.app.state.services  # type: ignore[attr-defined]
            session = new_session(client)
            image = upload(client, session, "dog.jpg")["path"]
            before = services.store.get(session)
            future = services.after_image_upload(session, image)["caption"]
            assert future.exception(timeout=30) is not None  # the endpoint's 500, logged
            assert services.store.get(session).messages == before.messages
    finally:
        refusing.stop()
