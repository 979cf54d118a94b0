"""`lore export --format hf`: an open_clip ViT CLIP (as `lore train` exports it) in `transformers`' CLIP layout.

The result is a `save_pretrained` folder of `CLIPModel` — the fine-tuned image tower and the text tower, the
processor (the model's mean, std and input size) and CLIP's BPE tokenizer rebuilt from open_clip's own
vocabulary — that `transformers.CLIPModel`, `CLIPVisionModelWithProjection` (LLaVA's `vision_tower`) and
`lore --model hf:` load. Only the architecture both libraries share converts: open_clip's `VisionTransformer`
with class-token pooling and a pre-norm, `TextTransformer`-free CLIP text (argmax pooling, causal mask) and its
default tokenizer. Anything else (ConvNeXt towers, attention pooling, layer scale, a text tower without the
causal mask, SigLIP-style models) is refused in one line, rather than written half-loadable.

What converts is checked before it is published: the folder is written into a staging folder
(`lore.files.staged_folder`), loaded back with `transformers`, and its image and text embeddings are compared
with open_clip's on the same images and prompts (`check_conversion`); only a folder that agrees is renamed into
place. The tokenizer's normaliser unescapes HTML entities as open_clip's `basic_clean` does (`&amp;` -> `&`,
applied twice), for the entities `HTML_ENTITIES` lists, when the folder is loaded with `AutoTokenizer` or
`CLIPProcessor` (`CLIPTokenizer.from_pretrained` rebuilds its own normaliser, without it); open_clip's ftfy
repair of mis-decoded text has no `tokenizers` equivalent, so prompts with mojibake can still tokenize
differently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import torch
from torch import nn

from ..files import staged_folder, write_text_atomic
from .encoders import ImageEncoder

#: HTML entities the exported tokenizer unescapes (open_clip's `basic_clean` unescapes every entity, twice)
HTML_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'", "&apos;": "'", "&nbsp;": " "}
#: prompts the conversion check compares (an entity among them)
CHECK_PROMPTS = ("a photo of a cat.", "a photo of the number 7, rock &amp; roll.", "An IMAGE   of a <dog>!")
#: largest |open_clip - transformers| embedding difference accepted, relative to the largest entry (float32
#: reorders sums: about 1e-6 is seen)
CONVERSION_TOLERANCE = 1e-4


def _unsupported(why: str) -> ValueError:
    return ValueError(f"this open_clip model has no transformers CLIP equivalent: {why}; `lore export --format hf` "
                      "converts ViT CLIP models with class-token pooling (e.g. ViT-B-32, ViT-B-16, ViT-L-14)")


def _check(clip: nn.Module) -> None:
    from open_clip.transformer import VisionTransformer

    visual = clip.visual
    if not isinstance(visual, VisionTransformer):
        raise _unsupported(f"its image tower is a {type(visual).__name__}, not a VisionTransformer")
    if visual.attn_pool is not None or visual.pool_type != "tok":
        raise _unsupported("its image tower pools by attention or average, not the class token")
    if isinstance(visual.ln_pre, nn.Identity) or visual.conv1.bias is not None:
        raise _unsupported("its patch embedding has a bias or no pre-norm")
    if not all(hasattr(clip, name) for name in ("transformer", "token_embedding", "ln_final", "text_projection")) \
            or not isinstance(clip.text_projection, torch.Tensor) or getattr(clip, "text_pool_type", "argmax") != "argmax":
        raise _unsupported("its text tower is not open_clip's built-in CLIP text transformer")
    if getattr(clip, "attn_mask", None) is None:
        raise _unsupported("its text tower has no causal mask (no_causal_mask), which transformers' CLIP always applies")
    for block in [*visual.transformer.resblocks, *clip.transformer.resblocks]:
        if not (isinstance(block.ls_1, nn.Identity) and isinstance(block.ls_2, nn.Identity)) or hasattr(block, "ln_1_kv"):
            raise _unsupported("its blocks use layer scale or cross-attention")


def _activation(blocks) -> str:
    from open_clip.transformer import QuickGELU

    return "quick_gelu" if isinstance(blocks[0].mlp.gelu, QuickGELU) else "gelu"


def _tower_config(transformer: nn.Module) -> dict:
    block = transformer.resblocks[0]
    return {"hidden_size": transformer.width, "intermediate_size": block.mlp.c_fc.out_features,
            "num_hidden_layers": len(transformer.resblocks), "num_attention_heads": block.attn.num_heads,
            "hidden_act": _activation(transformer.resblocks), "layer_norm_eps": block.ln_1.eps}


def _blocks(prefix: str, transformer: nn.Module) -> dict[str, torch.Tensor]:
    state = {}
    for i, block in enumerate(transformer.resblocks):
        layer = f"{prefix}.encoder.layers.{i}"
        q, k, v = block.attn.in_proj_weight.detach().chunk(3)
        qb, kb, vb = block.attn.in_proj_bias.detach().chunk(3)
        state.update({f"{layer}.self_attn.q_proj.weight": q, f"{layer}.self_attn.k_proj.weight": k,
                      f"{layer}.self_attn.v_proj.weight": v, f"{layer}.self_attn.q_proj.bias": qb,
                      f"{layer}.self_attn.k_proj.bias": kb, f"{layer}.self_attn.v_proj.bias": vb,
                      f"{layer}.self_attn.out_proj.weight": block.attn.out_proj.weight,
                      f"{layer}.self_attn.out_proj.bias": block.attn.out_proj.bias,
                      f"{layer}.layer_norm1.weight": block.ln_1.weight, f"{layer}.layer_norm1.bias": block.ln_1.bias,
                      f"{layer}.layer_norm2.weight": block.ln_2.weight, f"{layer}.layer_norm2.bias": block.ln_2.bias,
                      f"{layer}.mlp.fc1.weight": block.mlp.c_fc.weight, f"{layer}.mlp.fc1.bias": block.mlp.c_fc.bias,
                      f"{layer}.mlp.fc2.weight": block.mlp.c_proj.weight, f"{layer}.mlp.fc2.bias": block.mlp.c_proj.bias})
    return state


def clip_state_dict(clip: nn.Module) -> dict[str, torch.Tensor]:
    """open_clip CLIP weights under `transformers.CLIPModel`'s names (q, k, v split out of the fused projection;
    the towers' output projections transposed into `nn.Linear` weights)."""
    visual = clip.visual
    state = {
        "vision_model.embeddings.patch_embedding.weight": visual.conv1.weight,
        "vision_model.embeddings.class_embedding": visual.class_embedding,
        "vision_model.embeddings.position_embedding.weight": visual.positional_embedding,
        "vision_model.pre_layrnorm.weight": visual.ln_pre.weight, "vision_model.pre_layrnorm.bias": visual.ln_pre.bias,
        "vision_model.post_layernorm.weight": visual.ln_post.weight,
        "vision_model.post_layernorm.bias": visual.ln_post.bias,
        "visual_projection.weight": visual.proj.T,
        "text_model.embeddings.token_embedding.weight": clip.token_embedding.weight,
        "text_model.embeddings.position_embedding.weight": clip.positional_embedding,
        "text_model.final_layer_norm.weight": clip.ln_final.weight, "text_model.final_layer_norm.bias": clip.ln_final.bias,
        "text_projection.weight": clip.text_projection.T,
        "logit_scale": clip.logit_scale.reshape(()),
        **_blocks("vision_model", visual.transformer), **_blocks("text_model", clip.transformer),
    }
    return {name: value.detach().float().contiguous().clone() for name, value in state.items()}


def clip_config(clip: nn.Module, image_size: int):
    """The `transformers.CLIPConfig` of an open_clip ViT CLIP (CLIP's BPE ids: start 49406, end 49407)."""
    from transformers import CLIPConfig

    visual = clip.visual
    width = visual.proj.shape[1]
    vision = {**_tower_config(visual.transformer), "image_size": image_size, "patch_size": visual.conv1.kernel_size[0],
              "projection_dim": width}
    text = {**_tower_config(clip.transformer), "vocab_size": clip.token_embedding.num_embeddings,
            "max_position_embeddings": clip.positional_embedding.shape[0], "projection_dim": width,
            "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=width,
                      logit_scale_init_value=float(clip.logit_scale), architectures=["CLIPModel"])


def save_clip_tokenizer(folder: Path, context_length: int) -> None:
    """CLIP's BPE tokenizer for `transformers` (vocab.json, merges.txt), rebuilt from open_clip's bundled merges
    the way open_clip's own `SimpleTokenizer` builds its vocabulary, so the ids are the same; its normaliser
    unescapes `HTML_ENTITIES` first, twice, as open_clip does."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from tokenizers import normalizers
    from transformers import CLIPTokenizer, PreTrainedTokenizerFast

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    write_text_atomic(folder / "vocab.json", json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    write_text_atomic(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    clip = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=context_length)
    backend = clip.backend_tokenizer
    unescape = [normalizers.Replace(entity, text) for entity, text in HTML_ENTITIES.items()]
    backend.normalizer = normalizers.Sequence([*unescape, *unescape, *([backend.normalizer] if backend.normalizer else [])])
    # saved as the tokenizers backend itself: CLIPTokenizer's constructor rebuilds its own normaliser, so only this
    # class keeps the unescaping when AutoTokenizer or CLIPProcessor load the folder
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=clip.bos_token, eos_token=clip.eos_token,
                            pad_token=clip.pad_token, unk_token=clip.unk_token,
                            model_max_length=context_length).save_pretrained(folder)


def check_conversion(clip: nn.Module, encoder: ImageEncoder, folder: Path, image_size: int) -> None:
    """Loads `folder` with `transformers` and compares its image and text embeddings with open_clip's.

    Raises:
        ValueError: a tower whose embeddings differ by more than `CONVERSION_TOLERANCE` (relative), named.
    """
    import open_clip
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    images = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    context = clip.positional_embedding.shape[0]
    with torch.no_grad():
        ours_image = encoder(images)
        theirs_image = model.get_image_features(pixel_values=(images - encoder.mean) / encoder.std)
        ours_text = clip.encode_text(open_clip.tokenize(list(CHECK_PROMPTS), context_length=context))
        tokens = tokenizer(list(CHECK_PROMPTS), padding=True, return_tensors="pt")
        theirs_text = model.get_text_features(**tokens)
    for tower, ours, theirs in (("image", ours_image, theirs_image), ("text", ours_text, theirs_text)):
        theirs = theirs if isinstance(theirs, torch.Tensor) else theirs.pooler_output
        difference = float((ours - theirs).abs().max())
        scale = max(1.0, float(ours.abs().max()))
        if not difference <= CONVERSION_TOLERANCE * scale:
            raise ValueError(f"the converted {tower} tower does not compute what open_clip's does (largest embedding "
                             f"difference {difference:.3g}, allowed {CONVERSION_TOLERANCE * scale:.3g}): this model has "
                             "no exact transformers CLIP equivalent; nothing was written")


def export_open_clip_as_hf(clip: nn.Module, encoder: ImageEncoder, image_size: int, folder: Union[str, Path]) -> Path:
    """Writes `clip` (its image tower as fine-tuned) as a `transformers` CLIPModel folder; returns the folder.
    The folder is staged, checked against open_clip (`check_conversion`), then renamed into place whole.

    Raises:
        ValueError: an architecture `transformers`' CLIP cannot express (named), or a conversion that does not
            reproduce open_clip's embeddings. FileExistsError: `folder` exists and is not empty.
    """
    from transformers import CLIPImageProcessor, CLIPModel

    _check(clip)
    clip = clip.eval()
    model = CLIPModel(clip_config(clip, image_size))
    missing, unexpected = model.load_state_dict(clip_state_dict(clip), strict=False)
    missing = [name for name in missing if not name.endswith("position_ids")]
    if missing or unexpected:  # a mapping that does not cover the model would leave random weights: refuse
        raise RuntimeError(f"open_clip -> transformers mapping incomplete: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with staged_folder(folder) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        mean, std = encoder.mean.flatten().tolist(), encoder.std.flatten().tolist()
        CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                           image_mean=mean, image_std=std).save_pretrained(staging)
        save_clip_tokenizer(staging, clip.positional_embedding.shape[0])
        check_conversion(clip, encoder, staging, image_size)
    return Path(folder)


__all__ = ["CHECK_PROMPTS", "HTML_ENTITIES", "check_conversion", "clip_config", "clip_state_dict",
           "export_open_clip_as_hf", "save_clip_tokenizer"]
