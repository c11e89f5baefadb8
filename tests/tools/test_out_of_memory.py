"""The one out-of-memory path, tool by tool: a simulated GPU out-of-memory ends in a retry (after
the pool freed the device), in smaller work where the tool can shrink it, or in a clear 503;
the model stays loaded and the next request works.

The out-of-memory errors are real ``torch.OutOfMemoryError`` exceptions raised inside the real
(tiny, random-weight) networks by a forward pre-hook (:class:`RunsOutOfMemory`), exactly where
CUDA would raise them; everything around them (pool, backend, runner, API) is the real code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from igpt_server import media
from igpt_server.models.pool import ModelPool, OutOfMemory
from igpt_server.perception.gestures import Click, ClickPoint
from igpt_server.settings import Settings, VisionSettings
from igpt_server.speech.audio import decode_audio
from igpt_server.speech.backends import DecodeOptions
from igpt_server.speech.recognizer import SpeechRecognizer
from igpt_server.store import ArtifactKind, SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_tools.generate import BASE_KEY, Request, SdGenerateBackend
from igpt_tools.ground import GroundingDinoBackend, find_grounding_files
from igpt_tools.inpaint import POOL_KEY, SdInpaintBackend
from igpt_tools.ocr import EasyOcrBackend
from igpt_tools.sam import SamSegmentBackend
from igpt_tools.vqa import VisionQuery, VlmBackend
from tests.helpers import DATA, make_client, new_session, upload
from tests.tiny_perception import tiny_grounding, tiny_sam, tiny_vlm
from tests.tools.tiny_sd import tiny_model_dir
from tests.unit.test_speech_recognizer import _tiny_whisper_checkpoint


class RunsOutOfMemory:
    """A forward pre-hook that makes ``module`` raise CUDA's out-of-memory error while
    ``fails(call_number, args, kwargs)`` says so; ``calls`` records each call's first tensor shape."""

    def __init__(self, fails: Callable[[int, tuple[Any, ...], dict[str, Any]], bool]) -> None:
        self.fails = fails
        self.calls: list[tuple[int, ...]] = []
        self.raised = 0

    def __call__(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        self.calls.append(tuple(first.shape) if first is not None else ())
        if self.fails(len(self.calls), args, kwargs):
            self.raised += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB (simulated)")


@contextmanager
def out_of_memory(
    module: Any, fails: Callable[[int, tuple[Any, ...], dict[str, Any]], bool]
) -> Iterator[RunsOutOfMemory]:
    hook = RunsOutOfMemory(fails)
    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield hook
    finally:
        handle.remove()


def first_calls(n: int) -> Callable[[int, tuple[Any, ...], dict[str, Any]], bool]:
    return lambda call, _args, _kwargs: call <= n


def always(_call: int, _args: tuple[Any, ...], _kwargs: dict[str, Any]) -> bool:
    return True


def make_ctx(tmp_path: Path, **kw: Any) -> StoreToolContext:
    settings = Settings(data_dir=tmp_path / "data", **kw)
    store = SessionStore(settings.data_dir)
    return StoreToolContext(store.create().id, store, settings, ModelPool(settings))


def add_image(ctx: StoreToolContext, name: str) -> tuple[str, np.ndarray]:
    image = media.read_image_rgb(DATA / name)
    artifact = ctx.store.add_artifact(ctx.session_id, ArtifactKind.image, media.encode_png(image), ext="png")
    return artifact.path, image


def loaded(ctx: StoreToolContext, key: str) -> Any:
    model = ctx.pool.loaded(key)
    assert model is not None, f"{key} is not loaded"
    return model


def loads(ctx: StoreToolContext) -> dict[str, int]:
    return {m.key: m.loads for m in ctx.pool.describe()}


# SAM ------------------------------------------------------------------------------------------


def test_sam_retries_a_click_once_and_gives_the_same_mask(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir=tiny_sam(), devices={"sam": "cpu"})
    path, image = add_image(ctx, "dog_on_bench.png")
    backend = SamSegmentBackend()
    click = Click(points=[ClickPoint(x=300, y=420)])
    expected = backend.segment(ctx, path, image, click)
    with out_of_memory(loaded(ctx, "sam.tiny").obj.model.mask_decoder, first_calls(1)) as oom:
        mask = backend.segment(ctx, path, image, click)
    assert oom.raised == 1 and len(oom.calls) == 2
    np.testing.assert_array_equal(mask, expected)
    assert loads(ctx) == {"sam.tiny": 1}


def test_sam_out_of_memory_every_time_is_a_clear_503_and_the_next_click_works(tmp_path: Path) -> None:
    with make_client(tmp_path, model_dir=tiny_sam(), devices={"sam": "cpu"}) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        session = new_session(client)
        image = upload(client, session, "dog_on_bench.png")["path"]
        args = {"image_path": image, "gesture": {"type": "box", "x0": 100, "y0": 200, "x1": 450, "y1": 500}}
        first = client.post("/api/tools/segment", json={"session": session, "args": args})
        decoder = services.pool.loaded("sam.tiny").obj.model.mask_decoder
        before = services.store.get(session)
        with out_of_memory(decoder, always) as oom:
            response = client.post("/api/tools/segment", json={"session": session, "args": args})
        assert response.status_code == 503 and oom.raised == 2  # tried, freed the device and tried again
        error = response.json()["error"]
        assert error["code"] == "out_of_memory" and "sam.tiny" in error["message"]
        assert "IGPT_DEVICES=sam=" in error["message"] and response.headers.get("retry-after")
        assert services.store.get(session).artifacts == before.artifacts  # nothing stored
        again = client.post("/api/tools/segment", json={"session": session, "args": args})
        assert again.status_code == first.status_code
        assert {m["key"]: m["loads"] for m in client.get("/api/models").json()}["sam.tiny"] == 1


def test_segment_everything_shrinks_its_point_batches(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir=tiny_sam(), devices={"sam": "cpu"})
    backend = SamSegmentBackend()
    image = media.read_image_rgb(DATA / "dog.jpg")
    backend.segment_everything(ctx, image, points_per_side=4)  # loads the model

    def big_batches(_call: int, _args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        return kwargs["sparse_prompt_embeddings"].shape[0] > 16

    with out_of_memory(loaded(ctx, "sam.tiny").obj.model.mask_decoder, big_batches) as oom:
        segments = backend.segment_everything(
            ctx, image, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0
        )
    assert oom.raised == 2 and oom.calls[:2] == [oom.calls[0]] * 2  # 64 points at once, twice
    assert len(oom.calls) == 2 + 4  # then four batches of 16
    assert segments and all(s.mask.shape == image.shape[:2] for s in segments)


# diffusion ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def test_inpainting_retries_then_works_at_three_quarters_of_the_size(tmp_path: Path, sd_dir: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir=sd_dir, devices={"inpaint": "cpu"})
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    mask = media.read_image_rgb(DATA / "dog_on_bench_mask.png")[..., 0] > 127
    backend = SdInpaintBackend(steps=2)
    backend.inpaint(ctx, image, mask)
    unet = loaded(ctx, POOL_KEY).obj.unet

    def full_size(_call: int, args: tuple[Any, ...], _kwargs: dict[str, Any]) -> bool:
        return args[0].shape[-1] >= 32 or args[0].shape[-2] >= 32  # the native 64 px latents are 32 wide

    with out_of_memory(unet, full_size) as oom:
        out = backend.inpaint(ctx, image, mask)
    assert oom.raised == 2 and max(oom.calls[-1][-2:]) == 24  # 48 px: 3/4 of the native 64
    assert out.shape == image.shape and np.array_equal(out[~mask], image[~mask])
    assert loads(ctx) == {POOL_KEY: 1}


def test_text_to_image_out_of_memory_at_every_size_is_a_503_and_then_works(tmp_path: Path, sd_dir: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir=sd_dir, devices={"generate": "cpu"})
    backend = SdGenerateBackend()
    request = Request("a house", steps=1, guidance=7.5, control_scale=1.0, seed=0, size=64)
    backend.generate(ctx, request, None)
    with out_of_memory(loaded(ctx, BASE_KEY).obj.unet, always) as oom, pytest.raises(OutOfMemory) as caught:
        backend.generate(ctx, request, None)
    assert oom.raised == 3 and "at 3/4 of the working size" in caught.value.message
    assert caught.value.status == 503 and caught.value.detail["model"] == BASE_KEY
    assert backend.generate(ctx, request, None).shape == (64, 64, 3)
    assert loads(ctx) == {BASE_KEY: 1}


# grounding, VLM, OCR, speech ------------------------------------------------------------------------


def test_grounding_retries_with_a_smaller_input(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir=tiny_grounding(), devices={"ground": "cpu"})
    backend = GroundingDinoBackend()
    image = media.read_image_rgb(DATA / "dog_on_bench.png")
    backend.detect(ctx, image, "dog", box_threshold=0.0)
    key = find_grounding_files(tiny_grounding()).key

    def configured_size(_call: int, args: tuple[Any, ...], _kwargs: dict[str, Any]) -> bool:
        return min(args[0].shape[-2:]) >= 224  # the config's inference size

    with out_of_memory(loaded(ctx, key).obj, configured_size) as oom:
        found = backend.detect(ctx, image, "dog", box_threshold=0.0, max_boxes=3)
    assert oom.raised == 2 and min(oom.calls[-1][-2:]) == 168  # 3/4 of 224
    assert 1 <= len(found) <= 3 and all(0 <= d.box[0] < d.box[2] <= image.shape[1] for d in found)


def test_the_vlm_retries_once_then_answers_and_a_second_failure_is_a_503(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir=tiny_vlm(), devices={"vqa": "cpu"}, vision=VisionSettings(max_tokens=4))
    backend = VlmBackend()
    query = VisionQuery(instruction="What is it?", images=[media.read_image_rgb(DATA / "corgi.jpeg")])
    expected = backend.answer(ctx, query)
    key = ctx.pool.describe()[0].key
    with out_of_memory(loaded(ctx, key).obj, first_calls(1)) as oom:
        assert backend.answer(ctx, query) == expected
    assert oom.raised == 1
    with out_of_memory(loaded(ctx, key).obj, always) as oom, pytest.raises(OutOfMemory, match="after freeing"):
        backend.answer(ctx, query)
    assert oom.raised == 2  # nothing to shrink: the processor fixes the image size
    assert backend.answer(ctx, query) == expected and loads(ctx) == {key: 1}


@pytest.mark.slow
def test_ocr_falls_back_to_a_smaller_detector_canvas(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, devices={"ocr": "cpu"})
    path, _ = add_image(ctx, "unwant_text.jpg")
    expected = EasyOcrBackend().read(ctx, path)
    with out_of_memory(loaded(ctx, "ocr.easyocr").obj.detector, first_calls(2)) as oom:
        words = EasyOcrBackend().read(ctx, path)  # a new backend: no word cache
    assert oom.raised == 2 and len(oom.calls) == 3
    assert [w.text for w in words] == [w.text for w in expected]


def test_speech_retries_with_greedy_decoding(tmp_path: Path) -> None:
    _tiny_whisper_checkpoint(tmp_path / "models" / "whisper" / "tiny-random.pt")
    config = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models")
    speech = SpeechRecognizer(config, ModelPool(config), options=DecodeOptions(temperatures=(0.0,), max_new_tokens=4))
    audio = decode_audio(DATA / "jfk.flac", max_seconds=600)[:16000]
    assert speech.transcribe_audio(audio).text == "hello hello"
    network = speech.pool.loaded(speech.pool_key())
    assert network is not None
    with out_of_memory(network.obj.encoder, first_calls(2)) as oom:
        assert speech.transcribe_audio(audio).text == "hello hello"
    assert oom.raised == 2 and [m.loads for m in speech.pool.describe()] == [1]
