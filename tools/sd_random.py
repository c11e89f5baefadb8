"""Random-weight Stable Diffusion checkpoints for tests and benchmarks (never used to serve).

Two sizes with the same layout as a real checkpoint, saved with ``save_pretrained`` so
the server's own loading code reads them:

* ``"sd15"``: the Stable Diffusion 1.5 architecture (UNet 320/640/1280/1280, VAE
  128/256/512/512, CLIP ViT-L/14 text encoder, SD 1.5 ControlNet); as slow and as large
  as the trained model, for ``bench/gpu.py``.
* ``"tiny"``: two-block UNet (channels 4, 8), two-block VAE, a 2-layer CLIP text encoder
  (hidden 32): native size 64 px, an inpainting pass in well under a second on a CPU.

The tokenizer is a hand-written byte-level CLIP BPE (``vocab.json`` + ``merges.txt``: the
256 byte characters, their ``</w>`` forms, a few merges and the two special tokens): it
tokenizes any text, which is all random weights need.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

Size = Literal["tiny", "sd15"]

_MERGES = ("t h", "th e</w>", "d o", "do g</w>", "a n", "an d</w>", "o n</w>", "i n</w>")


def write_clip_tokenizer(folder: Path) -> int:
    """Write a byte-level CLIP tokenizer into ``folder``; returns its vocabulary size."""
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")
    config = {"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(vocab)


def unet_config(size: Size, in_channels: int) -> dict[str, Any]:
    """UNet2DConditionModel kwargs: ``in_channels`` 4 for text-to-image, 9 for inpainting."""
    if size == "sd15":
        return {
            "sample_size": 64,
            "in_channels": in_channels,
            "out_channels": 4,
            "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
        }
    return {
        "sample_size": 32,
        "in_channels": in_channels,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "block_out_channels": (4, 8),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "cross_attention_dim": 32,
        "attention_head_dim": 2,
    }


def controlnet_config(size: Size) -> dict[str, Any]:
    """ControlNetModel kwargs matching :func:`unet_config` of the same size."""
    unet = unet_config(size, 4)
    keys = ("in_channels", "down_block_types", "block_out_channels", "layers_per_block", "cross_attention_dim")
    config = {k: unet[k] for k in keys} | {"attention_head_dim": unet["attention_head_dim"]}
    if size == "tiny":
        config |= {"norm_num_groups": 4, "conditioning_embedding_out_channels": (4, 8)}
    return config


def vae_config(size: Size) -> dict[str, Any]:
    channels = (128, 256, 512, 512) if size == "sd15" else (4, 8)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * len(channels),
        "up_block_types": ("UpDecoderBlock2D",) * len(channels),
        "block_out_channels": channels,
        "latent_channels": 4,
        "layers_per_block": 2 if size == "sd15" else 1,
        "norm_num_groups": 32 if size == "sd15" else 2,
        "sample_size": 512 if size == "sd15" else 64,
    }


def text_config(size: Size, vocab_size: int) -> dict[str, Any]:
    """CLIPTextConfig kwargs; the sd15 embedding keeps CLIP's 49408 rows whatever the tokenizer."""
    common = {"max_position_embeddings": 77, "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1}
    if size == "sd15":
        return common | {
            "vocab_size": 49408,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "projection_dim": 768,
            "hidden_act": "quick_gelu",
        }
    return common | {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "projection_dim": 32,
    }


def save_pipeline(folder: Path, *, inpaint: bool, size: Size = "tiny", seed: int = 0) -> Path:
    """Save a random Stable Diffusion (inpainting when ``inpaint``) pipeline to ``folder``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab_size = write_clip_tokenizer(folder / "tokenizer")
    torch.manual_seed(seed)
    components: dict[str, Any] = {
        "unet": UNet2DConditionModel(**unet_config(size, 9 if inpaint else 4)),
        "vae": AutoencoderKL(**vae_config(size)),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**text_config(size, vocab_size))),
        "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        "scheduler": PNDMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            skip_prk_steps=True,
            steps_offset=1,
        ),
    }
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe: Any = cls(**components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def save_controlnet(folder: Path, *, size: Size = "tiny", seed: int = 0) -> Path:
    """Save a random ControlNetModel matching the UNet of ``size`` to ``folder``."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    model: Any = ControlNetModel(**controlnet_config(size))
    model.save_pretrained(folder)
    return folder


def save_hed(folder: Path, *, seed: int = 0) -> Path:
    """Save a random controlnet-aux HED network as ``folder/ControlNetHED.pth``."""
    import torch
    from controlnet_aux.hed import ControlNetHED_Apache2

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ControlNetHED_Apache2().state_dict(), folder / "ControlNetHED.pth")
    return folder / "ControlNetHED.pth"
