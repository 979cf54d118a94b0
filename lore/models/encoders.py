"""Image encoders that take pixels in [0, 1] and return embeddings.

Normalisation lives inside `ImageEncoder`, so attacks, eps and clamping all
work in pixel space. Loaders build encoders from open_clip (pretrained tags,
local checkpoint files, `local-dir:` folders) and from timm (DINOv2 and any
other timm model) without ever touching the network when given local files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..validation import looks_like_path

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
#: the weights file of a `local-dir:` folder that lore writes and reads (open_clip also reads the .bin name)
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
LOCAL_DIR_WEIGHTS = (OPEN_CLIP_WEIGHTS, "open_clip_pytorch_model.bin")


class ImageEncoder(nn.Module):
    """Wraps a backbone so that it maps images [B, C, H, W] in [0, 1] to embeddings [B, D].

    Args:
        backbone: module taking normalised images.
        mean: per-channel mean subtracted before the backbone.
        std: per-channel std the images are divided by.
        embed_dim: D, the width of the embedding (used to size multiplier networks).
    """

    def __init__(
        self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float], embed_dim: Optional[int] = None
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one entry per channel, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std entries must be > 0, got {tuple(std)}")
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] in [0, 1] -> [B, D] embeddings (not normalised)."""
        if images.dim() != 4 or images.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"images must have shape [B, {self.mean.shape[1]}, H, W], got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point pixels in [0, 1], got dtype {images.dtype} "
                            "(for uint8 images: images.float() / 255)")
        dtype = self._parameter_dtype()
        if dtype is not None and images.dtype != dtype and not torch.is_autocast_enabled(images.device.type):
            images = images.to(dtype)  # float16/float64 pixels into a float32 tower (autocast handles its own casts)
        return self.backbone((images - self.mean.to(images.dtype)) / self.std.to(images.dtype))

    def _parameter_dtype(self) -> Optional[torch.dtype]:
        for parameter in self.backbone.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return None


@dataclass
class OpenClipModel:
    """An open_clip model split the way LORE uses it.

    Attributes:
        encoder: the trainable image tower, pixels in [0, 1] -> [B, D].
        clip: the full open_clip model (its text tower gives zero-shot heads).
        tokenizer: open_clip tokenizer for the text tower.
        image_size: input resolution (H, W) the image tower expects.
    """

    encoder: ImageEncoder
    clip: nn.Module
    tokenizer: object
    image_size: tuple[int, int]


def load_open_clip(
    model: str,
    pretrained: Optional[str] = None,
    *,
    image_size: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
) -> OpenClipModel:
    """Builds an open_clip model; the image tower becomes an `ImageEncoder`.

    Args:
        model: an open_clip architecture name (`"ViT-B-32"`) or a
            `"local-dir:/path"` folder holding `open_clip_config.json` and weights.
        pretrained: a pretrained tag (`"openai"`, `"laion2b_s34b_b79k"`; needs the
            network once), a local checkpoint file (.safetensors/.bin/.pt, loaded
            with weights_only=True), or None for random weights.
        image_size: build the image tower for this input side instead of the architecture's own; pretrained
            position embeddings are resampled to it (open_clip's `resize_pos_embed` on loading).
        device: where the model is placed.

    Returns:
        An `OpenClipModel`.
    """
    import open_clip

    if pretrained is not None and model.startswith("local-dir:"):
        raise ValueError(f"pretrained={pretrained!r} is ignored for {model!r}; a local-dir folder carries its weights")
    if pretrained is not None and looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise FileNotFoundError(f"pretrained checkpoint file not found: {pretrained}")
    if model.startswith("local-dir:"):
        folder = Path(model[len("local-dir:"):])
        from ..files import check_complete

        if not (folder / "open_clip_config.json").is_file():
            raise FileNotFoundError(f"model {model!r}: no open_clip_config.json in {folder}")
        check_complete(folder, f"model {model!r}:")
        if not any((folder / name).is_file() for name in LOCAL_DIR_WEIGHTS):  # open_clip would build random weights
            raise FileNotFoundError(f"model {model!r}: {folder} holds no weights ({' or '.join(LOCAL_DIR_WEIGHTS)}); "
                                    "open_clip would start the model at random")
    elif model not in open_clip.list_models():
        raise ValueError(f"model {model!r} is not an open_clip architecture (e.g. ViT-B-32; see open_clip.list_models()), "
                         "'digits-clip', 'digits-cnn', 'timm:NAME', 'local-dir:PATH', or an existing folder")
    clip, _, preprocess = open_clip.create_model_and_transforms(
        model, pretrained=pretrained, device=device, weights_only=True, force_image_size=image_size
    )
    if image_size is not None:
        check_patch_multiple(image_size, getattr(clip.visual, "patch_size", None), model)
    normalize = [t for t in getattr(preprocess, "transforms", []) if type(t).__name__ == "Normalize"]
    mean, std = (normalize[0].mean, normalize[0].std) if normalize else (OPENAI_MEAN, OPENAI_STD)
    size = clip.visual.image_size
    image_size = (size, size) if isinstance(size, int) else tuple(size)
    encoder = ImageEncoder(clip.visual, mean, std, embed_dim=getattr(clip.visual, "output_dim", None)).to(device)
    return OpenClipModel(encoder=encoder, clip=clip, tokenizer=open_clip.get_tokenizer(model), image_size=image_size)


def load_timm(
    model: str,
    checkpoint: Optional[Union[str, Path]] = None,
    *,
    image_size: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
) -> ImageEncoder:
    """Builds a timm encoder (e.g. `vit_small_patch14_dinov2`) returning pooled features.

    Args:
        model: timm model name.
        checkpoint: optional local weights (.safetensors, or a torch file loaded
            with weights_only=True) of the backbone; no download ever happens.
        image_size: input resolution, for models that accept one (DINOv2: 518 by default). A checkpoint saved
            at another resolution has its position embeddings resampled (timm's checkpoint filter).
        device: where the model is placed.

    Returns:
        An `ImageEncoder` whose embedding is timm's pooled feature vector.
    """
    import timm

    kwargs = {} if image_size is None else {"img_size": image_size}
    try:
        backbone = timm.create_model(model, pretrained=False, num_classes=0, **kwargs)
    except TypeError as error:  # convolutional networks take no img_size: they accept any input size
        if "img_size" not in str(error):
            raise
        backbone = timm.create_model(model, pretrained=False, num_classes=0)
    if image_size is not None and hasattr(backbone, "patch_embed"):
        check_patch_multiple(image_size, getattr(backbone.patch_embed, "patch_size", None), f"timm:{model}")
    if checkpoint is not None:
        state = _adapted_to(backbone, load_state_file(checkpoint))
        missing, unexpected = backbone.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"checkpoint {checkpoint} does not fit {model}: missing keys {missing[:5]}...")
        if unexpected:
            raise ValueError(f"checkpoint {checkpoint} does not fit {model}: unexpected keys {unexpected[:5]}...")
    cfg = backbone.pretrained_cfg
    mean, std = cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD)
    return ImageEncoder(backbone, mean, std, embed_dim=backbone.num_features).to(device)


def check_patch_multiple(image_size: int, patch_size, model: str) -> None:
    """Refuses an input side that a ViT's patches do not tile (timm asserts at the first forward; others silently
    drop the last rows and columns of pixels).

    Args:
        image_size: the requested input side, pixels.
        patch_size: the model's patch side (an int or an (h, w) pair), or None for a model without patches.
    """
    if patch_size is None:
        return
    side = int(patch_size[0] if isinstance(patch_size, (tuple, list)) else patch_size)
    if image_size % side:
        below, above = image_size - image_size % side, image_size - image_size % side + side
        raise ValueError(f"image_size {image_size} is not a multiple of {model}'s patch size {side}: its patches would "
                         f"not tile the image; use {below or above} or {above}")


def _adapted_to(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` passed through timm's checkpoint filter of the backbone's family, when it has one: it resamples
    absolute position embeddings to the model's resolution (a DINOv2 checkpoint saved at 518 px loaded at
    224 px: a 37x37 grid bicubically resized to 16x16, the class token's embedding kept) and converts original
    formats (Meta's DINOv2, OpenAI CLIP) to timm's names."""
    import sys

    adapt = getattr(sys.modules.get(type(backbone).__module__), "checkpoint_filter_fn", None)
    if adapt is None:
        return state
    try:
        return dict(adapt(state, backbone))
    except Exception as error:  # a foreign file: say so rather than leak timm's internals
        raise ValueError(f"could not adapt the checkpoint to {type(backbone).__name__}: {error}") from error


def load_state_file(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """Loads a state dict safely: safetensors, or torch.load(weights_only=True).

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not a readable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt or foreign file: say which and why
        raise ValueError(f"could not read weights from {path}: {error}") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return state


def save_state_file(state: dict[str, torch.Tensor], path: Union[str, Path]) -> Path:
    """Writes a state dict as safetensors atomically (temporary file + rename), creating the folder.

    Several processes (DDP ranks) may write the same file at once; each renames its own complete copy.
    """
    from safetensors.torch import save

    from ..files import write_bytes_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, save({k: v.detach().cpu().contiguous() for k, v in state.items()}))
    return path


