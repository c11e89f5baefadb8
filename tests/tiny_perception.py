"""Tiny randomly initialised perception models written into a model directory, built once per run.

They have the real architectures (segment-anything's Sam, GroundingDINO with a Swin-T
backbone, LLaVA = CLIP vision tower + Llama) at toy sizes, saved the way real checkpoints
are, so the backends' real loading and inference code runs on the CPU in seconds::

    <root>/sam/sam_config.json + sam_tiny.pth            (a torch.save'd state dict)
    <root>/groundingdino/groundingdino_swint_ogc.pth      ({"model": state dict})
    <root>/groundingdino/GroundingDINO_SwinT_OGC.py       (the SwinT config with 1 layer each)
    <root>/groundingdino/bert-base-uncased/               (BERT, hidden 32, one layer, 60 words)
    <root>/vlm/                                           (LLaVA, save_pretrained + processor)

Their outputs are meaningless; tests compare them with the libraries' own reference code.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

ROOT = Path(tempfile.mkdtemp(prefix="igpt-tiny-perception-"))
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)

TINY_SAM = {
    "name": "tiny",
    "checkpoint": "sam_tiny.pth",
    "encoder_embed_dim": 64,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "image_size": 256,
    "patch_size": 16,
    "window_size": 4,
    "prompt_embed_dim": 32,
    "mask_in_chans": 4,
    "decoder_depth": 1,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 2,
    "iou_head_depth": 2,
    "iou_head_hidden_dim": 32,
}
BERT_WORDS = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", ",", "a", "the", "dog", "bench", "truck",
    "cat", "person", "car", "red", "on", "of", "and", "tree", "sky", "road", "sign", "text",
]  # fmt: skip


@functools.cache
def tiny_sam() -> Path:
    """The model dir with ``sam/`` (a 0.2 M-parameter SAM); returns the root."""
    import torch

    from igpt_tools.sam import SamConfig, build_sam

    folder = ROOT / "sam"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_sam(SamConfig.model_validate(TINY_SAM))
    torch.save(model.state_dict(), folder / TINY_SAM["checkpoint"])
    (folder / "sam_config.json").write_text(json.dumps(TINY_SAM), encoding="utf-8")
    return ROOT


@functools.cache
def tiny_grounding() -> Path:
    """The model dir with ``groundingdino/`` (Swin-T backbone, one encoder/decoder layer); returns the root."""
    import torch
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig
    from transformers import BertConfig, BertModel, BertTokenizer

    from igpt_tools.ground import _packaged_config

    folder = ROOT / "groundingdino"
    bert = folder / "bert-base-uncased"
    bert.mkdir(parents=True, exist_ok=True)
    (bert / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n", encoding="utf-8")
    BertTokenizer(str(bert / "vocab.txt")).save_pretrained(bert)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(BERT_WORDS),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(bert)
    packaged = _packaged_config(Path("groundingdino_swint_ogc.pth"))
    assert packaged is not None
    source = packaged.read_text(encoding="utf-8")
    for full, tiny in (
        ("enc_layers = 6", "enc_layers = 1"),
        ("dec_layers = 6", "dec_layers = 1"),
        ("num_queries = 900", "num_queries = 30"),
        ("dim_feedforward = 2048", "dim_feedforward = 64"),
    ):
        assert full in source, full
        source = source.replace(full, tiny)
    source += "inference_size = 224\ninference_max_size = 320\n"
    (folder / "GroundingDINO_SwinT_OGC.py").write_text(source, encoding="utf-8")
    args = SLConfig.fromfile(str(folder / "GroundingDINO_SwinT_OGC.py"))
    args.device = "cpu"
    args.text_encoder_type = str(bert)
    model = build_model(args)
    torch.save({"model": model.state_dict()}, folder / "groundingdino_swint_ogc.pth")
    return ROOT


@functools.cache
def tiny_vlm() -> Path:
    """The model dir with ``vlm/``: a 55 k-parameter LLaVA with a byte-level tokenizer; returns the root."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    folder = ROOT / "vlm"
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", "<pad>", "<image>"])}
    for char in bytes_to_unicode().values():
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_input_names=["input_ids", "attention_mask"],
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    template = (
        "{% for m in messages %}{{ m['role'] | upper }}: {% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=template,
        num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
        ),
        text_config=LlamaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=3,
        ),
        image_token_index=vocab["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return ROOT
