"""GPU benchmark of the full tier: latency and GPU memory, fp32 against half precision.

Models have their real architectures with random weights (they cost the same time and
memory as trained ones, and nothing is downloaded):

* SAM ViT-H (segment-anything): image embedding latency, per-click decoding latency;
* SAM 2.1 Hiera-L (the ``sam2`` package, built from its own ``sam2.1_hiera_l`` config):
  the same two figures, the encoder in fp32 and stored in bf16/fp16 as the ``sam2`` backend
  runs it (:func:`igpt_tools.sam.run_encoder_in`);
* Stable Diffusion 1.5 inpainting (UNet 9 channels, VAE, CLIP ViT-L/14 text encoder) and
  SD 1.5 + a ControlNet (built the way the ``generate`` tool builds it, sharing the base
  pipeline's modules): 512 and 1024 px, 25 steps, classifier-free guidance;
* GroundingDINO Swin-T OGC (the config shipped with groundingdino-py) with a random
  bert-base-uncased text encoder: latency of one query at 800x1333.

Half precision is fp16 for the diffusion pipelines (weights converted) and autocast for SAM's
image encoder and GroundingDINO (bf16 on GPUs that support it: the SAM tool's default; on a
CPU both use bf16). ``peak MiB`` is the
most GPU memory the case allocated above what was held before its section started;
``all loaded`` holds every half-precision model at once, as a server with all tools warm
does. Usage::

    python bench/gpu.py                 # on a GPU machine (about 5 minutes on an H100)
    python bench/gpu.py --smoke         # tiny configs, 2 steps, on the CPU: checks the script
    python bench/gpu.py --only sam,ground --json results.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRUCK = ROOT / "tests" / "data" / "truck.jpg"
SECTIONS = ("sam", "sam2", "inpaint", "controlnet", "ground")
MiB = 1024 * 1024


@dataclass
class Row:
    """One measured case; latency is the median in milliseconds, memory in MiB (None on a CPU)."""

    tool: str
    case: str
    dtype: str
    latency_ms: float | None
    weights_mib: float | None
    peak_mib: float | None
    note: str = ""


@dataclass(frozen=True)
class Plan:
    """What to run: full sizes on a GPU, or tiny ones for ``--smoke``."""

    device: str
    smoke: bool
    steps: int
    sizes: tuple[int, ...]
    repeats: int
    clicks: int

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def half(self) -> str:
        """The half-precision dtype of the diffusion pipelines: fp16 on CUDA, bf16 on the CPU."""
        return "fp16" if self.cuda else "bf16"

    @property
    def autocast_half(self) -> str:
        """The autocast dtype of SAM's encoder and GroundingDINO (bf16 where supported)."""
        import torch

        if self.cuda and not torch.cuda.is_bf16_supported():
            return "fp16"
        return "bf16"


# measuring -----------------------------------------------------------------------------------


def _torch_dtype(name: str) -> Any:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _sync(plan: Plan) -> None:
    import torch

    if plan.cuda:
        torch.cuda.synchronize(plan.device)


def _allocated(plan: Plan) -> int:
    import torch

    return int(torch.cuda.memory_allocated(plan.device)) if plan.cuda else 0


def _reset_peak(plan: Plan) -> None:
    import torch

    if plan.cuda:
        torch.cuda.reset_peak_memory_stats(plan.device)


def _peak_mib(plan: Plan, baseline: int) -> float | None:
    import torch

    if not plan.cuda:
        return None
    return (int(torch.cuda.max_memory_allocated(plan.device)) - baseline) / MiB


def _weights_mib(plan: Plan, *modules: Any) -> float | None:
    if not plan.cuda:
        return None
    total = sum(t.numel() * t.element_size() for m in modules for t in (*m.parameters(), *m.buffers()))
    return total / MiB


def _median_ms(plan: Plan, run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(plan)
        start = time.perf_counter()
        run()
        _sync(plan)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _autocast(plan: Plan, dtype: str) -> Any:
    import torch

    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if plan.cuda else "cpu", dtype=_torch_dtype(dtype))


def _free(plan: Plan) -> None:
    import torch

    gc.collect()
    if plan.cuda:
        torch.cuda.empty_cache()


def _truck(long_side: int) -> np.ndarray:
    """The truck photo (HxWx3 uint8 RGB) with its long side resized to ``long_side``."""
    import cv2

    from igpt_server.media import read_image_rgb

    image = read_image_rgb(TRUCK)
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)


# SAM -------------------------------------------------------------------------------------------


def bench_sam(plan: Plan, keep: dict[str, Any]) -> list[Row]:
    import torch
    from segment_anything import SamPredictor, sam_model_registry
    from segment_anything.build_sam import _build_sam

    baseline = _allocated(plan)
    with torch.device(plan.device):
        sam = _build_sam(64, 2, 2, [1], None) if plan.smoke else sam_model_registry["vit_h"](checkpoint=None)
    sam.to(plan.device).eval()  # segment-anything makes its pixel mean/std on the CPU whatever the device
    name = "tiny SAM" if plan.smoke else "ViT-H"
    predictor = SamPredictor(sam)
    image = _truck(1800 if not plan.smoke else 640)
    clicks = [(image.shape[1] * (i + 1) // (plan.clicks + 1), image.shape[0] // 2) for i in range(plan.clicks)]
    rows = []
    for dtype in ("fp32", plan.autocast_half):
        _reset_peak(plan)
        with torch.inference_mode(), _autocast(plan, dtype):
            predictor.set_image(image)  # warm-up
            embed = _median_ms(plan, lambda: predictor.set_image(image), plan.repeats)
        with torch.inference_mode():

            def click(point: tuple[int, int]) -> None:
                predictor.predict(point_coords=np.array([point]), point_labels=np.array([1]), multimask_output=True)

            click(clicks[0])
            per_click = statistics.median(_median_ms(plan, lambda p=p: click(p), 1) for p in clicks)  # type: ignore[misc]
        peak = _peak_mib(plan, baseline)
        weights = _weights_mib(plan, sam)
        note = "encoder under autocast" if dtype != "fp32" else ""
        rows.append(Row("sam", f"{name} image embedding", dtype, embed, weights, peak, note))
        rows.append(Row("sam", f"{name} one click (decoder)", dtype, per_click, weights, peak))
    keep["sam"] = sam
    return rows


def bench_sam2(plan: Plan, keep: dict[str, Any]) -> list[Row]:
    """SAM 2.1 Hiera-L: embedding and per-click latency, encoder fp32, then stored in half precision."""
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from igpt_tools.sam import run_encoder_in
    from igpt_tools.sam2 import TINY_SAM2, Sam2Config, build_sam2_model

    baseline = _allocated(plan)
    config = Sam2Config.model_validate(TINY_SAM2) if plan.smoke else Sam2Config(checkpoint="random.pt")
    model = build_sam2_model(config).to(plan.device).eval()
    name = "tiny SAM 2" if plan.smoke else "SAM 2.1 Hiera-L"
    predictor = SAM2ImagePredictor(model)
    image = _truck(1800 if not plan.smoke else 640)
    clicks = [(image.shape[1] * (i + 1) // (plan.clicks + 1), image.shape[0] // 2) for i in range(plan.clicks)]
    rows = []
    for dtype in ("fp32", plan.autocast_half):
        if dtype != "fp32":
            run_encoder_in(model.image_encoder, _torch_dtype(dtype))  # what the sam2 backend does on a GPU
        _free(plan)
        _reset_peak(plan)
        with torch.inference_mode():
            predictor.set_image(image)  # warm-up
            embed = _median_ms(plan, lambda: predictor.set_image(image), plan.repeats)

            def click(point: tuple[int, int]) -> None:
                predictor.predict(point_coords=np.array([point]), point_labels=np.array([1]), multimask_output=True)

            click(clicks[0])
            per_click = statistics.median(_median_ms(plan, lambda p=p: click(p), 1) for p in clicks)  # type: ignore[misc]
        peak = _peak_mib(plan, baseline)
        weights = _weights_mib(plan, model)
        note = "encoder weights in " + dtype if dtype != "fp32" else ""
        rows.append(Row("sam2", f"{name} image embedding", dtype, embed, weights, peak, note))
        rows.append(Row("sam2", f"{name} one click (decoder)", dtype, per_click, weights, peak))
    keep["sam2"] = model
    return rows


# Stable Diffusion --------------------------------------------------------------------------------


def _sd_components(plan: Plan, inpaint: bool, tokenizer_dir: Path) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from igpt_tools import sd_random

    size: sd_random.Size = "tiny" if plan.smoke else "sd15"
    vocab_size = sd_random.write_clip_tokenizer(tokenizer_dir)
    with torch.device(plan.device):
        unet = UNet2DConditionModel(**sd_random.unet_config(size, 9 if inpaint else 4))
        vae = AutoencoderKL(**sd_random.vae_config(size))
        text_encoder = CLIPTextModel(CLIPTextConfig(**sd_random.text_config(size, vocab_size)))
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": CLIPTokenizer.from_pretrained(tokenizer_dir),
        "scheduler": scheduler,
    }


def _sd_sizes(plan: Plan) -> tuple[int, ...]:
    return (64, 128) if plan.smoke else plan.sizes


def _run_pipeline(
    plan: Plan,
    pipe: Any,
    kwargs_for: Callable[[int], dict[str, Any]],
    tool: str,
    what: str,
    baseline: int,
    modules: list[Any],
) -> list[Row]:
    """Time ``pipe`` at every size, in fp32 and then in half precision (the pipeline stays half)."""
    import torch

    rows = []
    for dtype in ("fp32", plan.half):
        pipe.to(_torch_dtype(dtype))
        for size in _sd_sizes(plan):
            _free(plan)
            _reset_peak(plan)
            try:
                with torch.inference_mode():
                    pipe(**kwargs_for(size), num_inference_steps=2)  # warm-up
                    latency: float | None = _median_ms(plan, _call(pipe, kwargs_for(size), plan.steps), plan.repeats)
                note = f"{plan.steps} steps"
            except Exception as exc:  # report and go on: one failing case must not hide the others
                latency, note = None, _failure(exc)
            weights, peak = _weights_mib(plan, *modules), _peak_mib(plan, baseline)
            rows.append(Row(tool, f"{what} {size}x{size}", dtype, latency, weights, peak, note))
    return rows


def _call(pipe: Any, kwargs: dict[str, Any], steps: int) -> Callable[[], object]:
    return lambda: pipe(**kwargs, num_inference_steps=steps)


def bench_inpaint(plan: Plan, keep: dict[str, Any], work: Path) -> list[Row]:
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    baseline = _allocated(plan)
    components = _sd_components(plan, inpaint=True, tokenizer_dir=work / "inpaint-tokenizer")
    pipe: Any = StableDiffusionInpaintPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.to(plan.device).set_progress_bar_config(disable=True)
    from PIL import Image

    def kwargs_for(size: int) -> dict[str, Any]:
        image = Image.fromarray(_truck(size)).resize((size, size))
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
        return {
            "prompt": "a red sofa on a street",
            "negative_prompt": "blurry",
            "image": image,
            "mask_image": Image.fromarray(mask),
            "height": size,
            "width": size,
            "guidance_scale": 7.5,
            "generator": torch.Generator("cpu").manual_seed(0),
            "output_type": "np",
        }

    name = "tiny inpaint" if plan.smoke else "SD1.5 inpaint"
    modules = [components["unet"], components["vae"], components["text_encoder"]]
    rows = _run_pipeline(plan, pipe, kwargs_for, "inpaint", name, baseline, modules)
    keep["inpaint"] = pipe
    return rows


def bench_controlnet(plan: Plan, keep: dict[str, Any], work: Path) -> list[Row]:
    import cv2
    import torch
    from diffusers import ControlNetModel, StableDiffusionPipeline
    from PIL import Image

    from igpt_tools import sd_random
    from igpt_tools.generate import controlnet_pipeline

    baseline = _allocated(plan)
    components = _sd_components(plan, inpaint=False, tokenizer_dir=work / "base-tokenizer")
    base: Any = StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    with torch.device(plan.device):
        controlnet: Any = ControlNetModel(**sd_random.controlnet_config("tiny" if plan.smoke else "sd15"))
    base.to(plan.device)
    controlnet.to(plan.device)
    pipe = controlnet_pipeline(base, controlnet)  # the generate tool's sharing: no second UNet/VAE/text encoder
    assert pipe.unet is base.unet and pipe.vae is base.vae

    def kwargs_for(size: int) -> dict[str, Any]:
        edges = cv2.Canny(cv2.resize(_truck(size), (size, size)), 100, 200)
        return {
            "prompt": "a toy truck, studio photo",
            "negative_prompt": "blurry",
            "image": Image.fromarray(np.stack([edges] * 3, axis=2)),
            "height": size,
            "width": size,
            "guidance_scale": 7.5,
            "generator": torch.Generator("cpu").manual_seed(0),
            "output_type": "np",
        }

    name = "tiny + ControlNet" if plan.smoke else "SD1.5 + ControlNet (canny)"
    modules = [components["unet"], components["vae"], components["text_encoder"], controlnet]
    rows = _run_pipeline(plan, pipe, kwargs_for, "controlnet", name, baseline, modules)
    keep["controlnet"] = pipe
    return rows


# GroundingDINO -----------------------------------------------------------------------------------

BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", ",", "a", "the", "truck", "car", "person"]
BERT_WORDS += ["dog", "bench", "tree", "road", "window", "wheel", "sky", "red", "white", "blue", "small", "big"]


def _bert_dir(plan: Plan, folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n", encoding="utf-8")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    if plan.smoke:
        sizes = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}
        config = BertConfig(vocab_size=len(BERT_WORDS), **sizes)
    else:
        config = BertConfig()  # bert-base-uncased: 12 layers, hidden 768, vocabulary 30522
    BertModel(config).save_pretrained(folder)
    return folder


def bench_ground(plan: Plan, keep: dict[str, Any], work: Path) -> list[Row]:
    import groundingdino
    import torch
    from groundingdino.models import build_model
    from groundingdino.util.inference import predict
    from groundingdino.util.slconfig import SLConfig

    baseline = _allocated(plan)
    source = (Path(groundingdino.__file__).parent / "config" / "GroundingDINO_SwinT_OGC.py").read_text()
    if plan.smoke:
        for key, full, tiny in (("enc_layers", 6, 1), ("dec_layers", 6, 1), ("num_queries", 900, 30)):
            source = source.replace(f"{key} = {full}", f"{key} = {tiny}")
    config_file = work / "GroundingDINO_SwinT_OGC.py"
    config_file.write_text(source, encoding="utf-8")
    args = SLConfig.fromfile(str(config_file))
    args.device = plan.device
    args.text_encoder_type = str(_bert_dir(plan, work / "bert-base-uncased"))
    with contextlib.redirect_stdout(sys.stderr):
        model = build_model(args).to(plan.device).eval()
    height, width = (224, 320) if plan.smoke else (800, 1333)
    image = torch.from_numpy(np.ascontiguousarray(_truck(width)[:height])).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    tensor = (image - mean) / std
    caption = "truck . person . car"
    rows = []
    for dtype in ("fp32", plan.autocast_half):
        _free(plan)
        _reset_peak(plan)
        try:
            with _autocast(plan, dtype):
                predict(model, tensor, caption, 0.35, 0.25, device=plan.device)  # warm-up
                latency = _median_ms(
                    plan, lambda: predict(model, tensor, caption, 0.35, 0.25, device=plan.device), plan.repeats
                )
            note = f"{tensor.shape[2]}x{tensor.shape[1]}" + (", autocast" if dtype != "fp32" else "")
        except Exception as exc:
            latency, note = None, _failure(exc)
        name = "tiny SwinT (1 layer)" if plan.smoke else "SwinT OGC"
        weights, peak = _weights_mib(plan, model), _peak_mib(plan, baseline)
        rows.append(Row("ground", f"{name} one query", dtype, latency, weights, peak, note))
    keep["ground"] = model
    return rows


# all together --------------------------------------------------------------------------------------


def all_loaded(plan: Plan, keep: dict[str, Any], baseline: int) -> Row:
    """Every model kept from the sections (diffusion pipelines in half precision), resident at once."""
    _free(plan)
    held = (_allocated(plan) - baseline) / MiB if plan.cuda else None
    return Row("all", f"all loaded at once ({', '.join(keep)})", "mixed", None, held, None, "weights resident")


def _failure(exc: Exception) -> str:
    traceback.print_exception(exc, file=sys.stderr)
    return f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"


def print_table(rows: list[Row], plan: Plan) -> None:
    print(f"\ndevice {plan.device}; steps {plan.steps}; {'smoke (tiny configs)' if plan.smoke else 'full sizes'}")
    header = (
        f"| {'tool':10} | {'case':44} | {'dtype':5} | {'latency ms':>10} | {'weights MiB':>11} | {'peak MiB':>9} | note"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|------")
    for r in rows:
        print(
            f"| {r.tool:10} | {r.case:44} | {r.dtype:5} | {_num(r.latency_ms, 10)} | {_num(r.weights_mib, 11)} "
            f"| {_num(r.peak_mib, 9)} | {r.note}"
        )


def _num(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.1f}"


def parse(argv: list[str] | None) -> tuple[Plan, list[str], Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny configs, 2 steps, runs on a CPU in a minute or two")
    parser.add_argument("--device", default=None, help="cuda:0 (default when CUDA is visible) or cpu")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 25; 2 with --smoke)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="diffusion sizes (square)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a visible GPU; use --smoke on a CPU")
    if not device.startswith("cuda") and not args.smoke:
        parser.error("no GPU is visible: the full-size benchmark needs one; run with --smoke to check the script")
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    plan = Plan(
        device=device,
        smoke=args.smoke,
        steps=args.steps or (2 if args.smoke else 25),
        sizes=tuple(args.sizes),
        repeats=args.repeats or (1 if args.smoke else 3),
        clicks=3 if args.smoke else 20,
    )
    return plan, only, args.json


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    import logging
    import warnings

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def main(argv: list[str] | None = None) -> int:
    plan, only, json_path = parse(argv)
    import torch

    torch.manual_seed(0)
    keep: dict[str, Any] = {}
    rows: list[Row] = []
    baseline = _allocated(plan)
    with tempfile.TemporaryDirectory(prefix="igpt-bench-gpu-") as tmp, _quiet_libraries():
        work = Path(tmp)
        sections: dict[str, Callable[[], list[Row]]] = {
            "sam": lambda: bench_sam(plan, keep),
            "sam2": lambda: bench_sam2(plan, keep),
            "inpaint": lambda: bench_inpaint(plan, keep, work),
            "controlnet": lambda: bench_controlnet(plan, keep, work),
            "ground": lambda: bench_ground(plan, keep, work),
        }
        for name in only:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                rows += sections[name]()
            except Exception as exc:
                rows.append(Row(name, "(section)", "-", None, None, None, _failure(exc)))
        rows.append(all_loaded(plan, keep, baseline))
    print_table(rows, plan)
    if json_path is not None:
        json_path.write_text(json.dumps({"plan": asdict(plan), "rows": [asdict(r) for r in rows]}, indent=2))
    return 1 if any(r.note.startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
