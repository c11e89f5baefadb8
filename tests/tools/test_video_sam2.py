"""The ``sam2-video`` backend of ``track``: SAM 2's video predictor, on a tiny random SAM 2.

The model is built from the package's SAM 2.1 tiny config with every size shrunk
(:data:`igpt_tools.sam2.TINY_SAM2`), its random weights saved as an official-style checkpoint
in a temporary model directory; nothing is downloaded. Random weights make meaningless masks,
so these tests prove the plumbing only (the predictor built and loaded the way the server does
it, frames streamed in chunks, one HxW bool mask per frame, the tool's output on CPU), not
tracking quality. Frames are real: a short piece of ``tests/data/bikes.mp4``.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from igpt_server.media import encode_png
from igpt_server.models.pool import ModelPool
from igpt_server.settings import Settings
from igpt_server.store import SessionStore
from igpt_server.tooling.context import StoreToolContext
from igpt_tools.sam2 import CONFIG_FILE, TINY_SAM2, Sam2Config, build_sam2_model
from igpt_tools.video import clip
from igpt_tools.video.sam2_track import Sam2VideoBackend
from tests.helpers import make_client, new_session
from tests.video_clips import BIKES

#: bikes.mp4 has no shot cut between 3.1 and 5.4 s
START = 3.1


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<model_dir>/sam2/`` with the tiny random SAM 2 (``{"model": state_dict}``) and its config."""
    root = tmp_path_factory.mktemp("models")
    (root / "sam2").mkdir()
    torch.manual_seed(0)
    model = build_sam2_model(Sam2Config.model_validate(TINY_SAM2))
    torch.save({"model": model.state_dict()}, root / "sam2" / TINY_SAM2["checkpoint"])
    (root / "sam2" / CONFIG_FILE).write_text(json.dumps(TINY_SAM2), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames (0.48 s, 640x272, 25 fps) of bikes.mp4 from :data:`START`, re-encoded (H.264)."""
    target = tmp_path_factory.mktemp("clips") / "bikes_short.mp4"
    rate = Fraction(25)
    with av.open(str(target), "w") as output:
        stream: Any = output.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 640, 272, "yuv420p"
        for index, frame in enumerate(clip.read_frames(BIKES, START, START + 12 / 25)):
            picture = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
            picture.pts = index
            picture.time_base = 1 / rate
            for packet in stream.encode(picture):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return target


def _ctx(tmp_path: Path, model_dir: Path) -> StoreToolContext:
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, devices={"sam2": "cpu"})
    store = SessionStore(settings.data_dir)
    return StoreToolContext(store.create().id, store, settings, ModelPool(settings))


def test_without_a_checkpoint_the_reason_names_the_folder_and_the_fallback(tmp_path: Path) -> None:
    reason = Sam2VideoBackend().unavailable_reason(Settings(data_dir=tmp_path, model_dir=tmp_path))
    assert reason is not None
    assert str(tmp_path / "sam2") in reason and "sam2.1_hiera_large.pt" in reason
    assert "OpenCV tracker" in reason


def test_the_tool_uses_sam2_with_a_checkpoint_and_opencv_without(tmp_path: Path, model_dir: Path) -> None:
    with make_client(tmp_path / "a", model_dir=model_dir) as client:
        track = next(t for t in client.get("/api/tools").json() if t["name"] == "track")
        assert track["available"] and track["backend"] == "sam2-video"
    with make_client(tmp_path / "b") as client:
        track = next(t for t in client.get("/api/tools").json() if t["name"] == "track")
        assert track["available"] and track["backend"] == "pyav"


def test_follow_streams_chunks_and_gives_one_bool_mask_per_frame(tmp_path: Path, model_dir: Path) -> None:
    frames = [(f.time, f.image) for f in clip.read_frames(BIKES, START, START + 7 / 25)]
    assert len(frames) == 7
    first = np.zeros(frames[0][1].shape[:2], bool)
    first[90:200, 280:380] = True
    # chunks of 3 frames: the seed frame plus 2 new ones, so 3 predictor states for 6 frames
    steps = list(Sam2VideoBackend(chunk_frames=3).follow(_ctx(tmp_path, model_dir), frames, first))
    assert [s.time for s in steps] == [t for t, _ in frames]
    assert steps[0].mask is first
    for step in steps:
        assert step.mask is not None, step.reason
        assert step.mask.shape == (272, 640) and step.mask.dtype == bool


def test_track_through_the_api_runs_sam2_on_every_frame_and_returns_the_clip(
    tmp_path: Path, model_dir: Path, short_clip: Path
) -> None:
    with make_client(tmp_path / "data", model_dir=model_dir, devices={"sam2": "cpu"}) as client:
        session = new_session(client)
        with short_clip.open("rb") as fh:
            video = client.post(f"/api/sessions/{session}/files", files={"file": ("short.mp4", fh)}).json()["path"]
        frame = client.post(
            "/api/tools/frame", json={"session": session, "args": {"video_path": video, "time": 0.2}}
        ).json()
        frame = frame["artifacts"][0]
        mask = np.zeros((272, 640), bool)
        mask[90:200, 280:380] = True
        selection = client.post(
            f"/api/sessions/{session}/files",
            files={"file": ("sel.png", encode_png(mask))},
            data={"kind": "mask", "parent": frame["path"]},
        )
        assert selection.status_code == 201, selection.text
        args = {"mask_path": selection.json()["path"], "effect": "pixelate"}
        response = client.post("/api/tools/track", json={"session": session, "args": args})
        assert response.status_code == 200, response.text
        result = response.json()
        out = result["artifacts"][0]
        assert out["kind"] == "video" and out["parent"] == video
        data = client.get(f"/api/sessions/{session}/files/{out['path']}").content
    (tmp_path / "out.mp4").write_bytes(data)
    assert len(list(clip.read_frames(tmp_path / "out.mp4"))) == 12
    # every frame got a non-empty mask from SAM 2 (the seeded random weights give one; what it
    # covers means nothing)
    assert result["data"]["tracked_frames"] == 12 and result["data"]["lost"] == {}
