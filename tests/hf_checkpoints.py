"""Tiny random `transformers` checkpoints written offline with the library's own config classes and
`save_pretrained`: a CLIP, a SigLIP and a DINOv2 folder as a user would have them (config, weights, processor,
tokenizer)."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("a", "photo", "of", "the", "digit", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
         "nine", "cat", "dog", "bird", ".")
PAD, BOS, UNK, EOS = "<pad>", "<bos>", "<unk>", "<eos>"
MEAN, STD = [0.48, 0.46, 0.41], [0.27, 0.26, 0.28]
SIZE, PATCH = 32, 8


def save_tokenizer(folder: Path, *, max_length: int) -> None:
    """A word-level tokenizer over `WORDS` that wraps every prompt as <bos> ... <eos> (ids: pad 0, bos 1, unk 2,
    eos 3), saved as a fast tokenizer `AutoTokenizer` loads."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate((PAD, BOS, UNK, EOS, *WORDS))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A {EOS}", special_tokens=[(BOS, 1), (EOS, 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                        unk_token=UNK, model_max_length=max_length)
    tokenizer.save_pretrained(folder)


def _text(max_length: int) -> dict:
    return dict(vocab_size=4 + len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=max_length, pad_token_id=0, bos_token_id=1,
                eos_token_id=3)


def _vision() -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=SIZE,
                patch_size=PATCH)


def clip_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny `CLIPModel` (projection 16) with a CLIP image processor and the word tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    # as released CLIP configs do, the towers' own configs repeat projection_dim (CLIPVisionModelWithProjection
    # reads only vision_config)
    config = CLIPConfig(text_config={**_text(16), "projection_dim": 16}, vision_config={**_vision(), "projection_dim": 16},
                        projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}, image_mean=MEAN,
                       image_std=STD).save_pretrained(folder)
    save_tokenizer(folder, max_length=16)
    return folder


def siglip_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny `SiglipModel` with a SigLIP image processor and the word tokenizer (fixed length 16)."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(seed)
    SiglipModel(SiglipConfig(text_config=_text(16), vision_config=_vision())).save_pretrained(folder)
    SiglipImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=MEAN, image_std=STD).save_pretrained(folder)
    save_tokenizer(folder, max_length=16)
    return folder


def clip_vision_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny `CLIPVisionModelWithProjection` alone (no text tower: a linear head) with a CLIP image processor."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    CLIPVisionModelWithProjection(CLIPVisionConfig(**_vision(), projection_dim=16)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}, image_mean=MEAN,
                       image_std=STD).save_pretrained(folder)
    return folder


def siglip_vision_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny `SiglipVisionModel` alone with a SigLIP image processor."""
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    SiglipVisionModel(SiglipVisionConfig(**_vision())).save_pretrained(folder)
    SiglipImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=MEAN, image_std=STD).save_pretrained(folder)
    return folder


def dinov2_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny `Dinov2Model` (its position table for 32 px) with a processor cropping to 32."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=SIZE,
                          patch_size=PATCH)
    Dinov2Model(config).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}, image_mean=MEAN,
                      image_std=STD).save_pretrained(folder)
    return folder


def normalised(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] pixels in [0, 1] -> what the processor would feed `transformers` (mean/std applied)."""
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
