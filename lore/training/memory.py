"""How much device memory a training step needs, predicted before any step runs (`lore train --plan`).

The peak of a step is the sum of what lives through the whole run and what one forward pass keeps for its
backward pass:

- **state**: the encoder's parameters, their gradients (alive from one backward to the next step's
  `zero_grad`), AdamW's two moments, phi_0's frozen fp32 snapshot, and the multiplier network with its
  gradients and optimizer state;
- **activations**: the tensors one forward pass saves for backward. They grow with the images in flight:
  B / accumulation images per pass in `--passes sequential` (the GPU default: the adversarial pass is
  back-propagated before the clean one runs) and twice that in `fused`. Under bf16 autocast the pass also
  keeps bf16 copies of the weights it casts (a fixed part, counted once);
- **inputs**: the batch, its PGD start and the adversarial images (4 float32 copies of the batch).

Activations are measured, not guessed: the encoder runs once on 1 and once on 2 images under
`torch._subclasses.fake_tensor.FakeTensorMode` (shapes and dtypes only: no compute, no memory), and
`saved_tensors_hooks` adds up the storages it saves, the parameters' own left out. The difference is one
image's activations; the rest is the fixed part. The autocast policy is the CPU's, which casts the same
matmul-type ops as CUDA's; attention saves what this machine's kernel saves (on a GPU, flash attention saves
a little less), so the figure is an upper bound there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

GIB = 2 ** 30


@dataclass(frozen=True)
class MemoryPlan:
    """The predicted peak of a training step on one device, in bytes.

    Attributes:
        parameters: every parameter and buffer of the encoder.
        gradients: the gradients of the trainable parameters (same dtype).
        optimizer_state: AdamW's two moments of each trainable parameter.
        reference: phi_0's frozen snapshot of the encoder (fp32, every parameter and buffer).
        dual: the multiplier network, its gradients and its optimizer's state (0 without one).
        activations_per_image: what one forward pass saves for backward, per image.
        fixed_activations: what a forward pass saves whatever the batch (bf16 copies of the weights).
        images_per_pass: images whose activations are alive at once (batch / accumulation, x2 fused).
        input_bytes: the batch, its PGD start and the adversarial images.
    """

    parameters: int
    gradients: int
    optimizer_state: int
    reference: int
    dual: int
    activations_per_image: int
    fixed_activations: int
    images_per_pass: int
    input_bytes: int

    @property
    def state(self) -> int:
        """What lives through the run: parameters, gradients, AdamW's moments, phi_0 and the dual."""
        return self.parameters + self.gradients + self.optimizer_state + self.reference + self.dual

    @property
    def activations(self) -> int:
        return self.fixed_activations + self.activations_per_image * self.images_per_pass

    @property
    def peak(self) -> int:
        return self.state + self.activations + self.input_bytes

    def largest_images_per_pass(self, capacity: int, reserve: float = 0.1) -> int:
        """The most images one pass may hold on a device of `capacity` bytes, keeping `reserve` of it free for
        the allocator's fragmentation, kernels' workspaces and the CUDA context."""
        room = capacity * (1 - reserve) - self.state - self.fixed_activations
        per_image = self.activations_per_image + self.input_bytes / max(1, self.images_per_pass)
        return max(0, int(room // per_image))

    def describe(self, capacity: Optional[int] = None) -> str:
        """Lines for `lore train --plan`: each part in GiB, the peak, and with `capacity` whether it fits."""
        rows = [("parameters", self.parameters), ("gradients", self.gradients),
                ("AdamW moments", self.optimizer_state), ("phi_0 snapshot", self.reference),
                ("dual network (+grad, state)", self.dual),
                (f"activations: {self.images_per_pass} images x {self.activations_per_image / 2 ** 20:.1f} MiB",
                 self.activations_per_image * self.images_per_pass),
                ("activations: fixed (autocast weight copies)", self.fixed_activations),
                ("inputs (batch, PGD start, adversarial)", self.input_bytes)]
        lines = [f"  {name:<48}{size / GIB:>9.2f} GiB" for name, size in rows]
        lines.append(f"  {'predicted peak':<48}{self.peak / GIB:>9.2f} GiB")
        if capacity is not None:
            fits = "fits" if self.peak <= capacity * 0.9 else "does NOT fit"
            lines.append(f"  on a {capacity / 1e9:.0f} GB device (10 % kept free): {fits}; at most "
                         f"{self.largest_images_per_pass(capacity)} images per pass")
        return "\n".join(lines)


def saved_activation_bytes(encoder: nn.Module, image_size: int, images: int,
                           autocast_dtype: Optional[torch.dtype] = None) -> int:
    """Bytes of the storages a forward pass of `encoder` over `images` blank images saves for backward (its
    parameters left out), measured under FakeTensorMode: nothing is computed or allocated."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    saved: dict[int, int] = {}
    with mode:
        fake = {name: mode.from_tensor(t, static_shapes=True) for name, t in _named_state(encoder).items()}
        owned = {t.untyped_storage()._cdata for t in fake.values()}
        fake = {name: (nn.Parameter(t, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else t)
                for name, t in fake.items()}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage._cdata not in owned:
                saved[storage._cdata] = storage.nbytes()
            return tensor

        x = torch.zeros(images, 3, image_size, image_size, requires_grad=True)
        autocast = (torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype is not None
                    else contextlib.nullcontext())
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
            torch.func.functional_call(encoder, fake, (x,), strict=False)
    return sum(saved.values())


def _named_state(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(dict(module.named_buffers(remove_duplicate=False)))
    return tensors


def plan_memory(encoder: nn.Module, image_size: int, *, batch_size: int, accumulation: int = 1,
                passes: str = "sequential", precision: str = "bf16", dual_hidden: Optional[int] = None,
                embed_dim: Optional[int] = None) -> MemoryPlan:
    """The `MemoryPlan` of a training step of `encoder`.

    Args:
        encoder: the image encoder, images [B, 3, S, S] in [0, 1] -> [B, D], as built (before DDP/compile).
        image_size: S.
        batch_size: images per device per step.
        accumulation: micro-batches per step (`--grad-accumulation`).
        passes: "sequential" or "fused" (constrained methods; FARE and TeCoA have one pass either way, pass
            "sequential" for them).
        precision: "bf16" (autocast) or "fp32".
        dual_hidden: the multiplier network's hidden width (None: no network).
        embed_dim: D, its input width.
    """
    dtype = torch.bfloat16 if precision == "bf16" else None
    one = saved_activation_bytes(encoder, image_size, 1, dtype)
    two = saved_activation_bytes(encoder, image_size, 2, dtype)
    per_image, fixed = two - one, max(0, 2 * one - two)
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    state = _named_state(encoder).values()
    parameter_bytes = sum(t.numel() * t.element_size() for t in state)
    gradient_bytes = sum(p.numel() * p.element_size() for p in trainable)
    dual = 0
    if dual_hidden is not None and embed_dim is not None:
        dual = 4 * 4 * (embed_dim * dual_hidden + 2 * dual_hidden + 1)  # fp32 weights, grads, 2 moments at most
    micro = batch_size // accumulation
    return MemoryPlan(
        parameters=parameter_bytes, gradients=gradient_bytes, optimizer_state=2 * gradient_bytes,
        reference=parameter_bytes, dual=dual,
        activations_per_image=per_image, fixed_activations=fixed,
        images_per_pass=micro * (2 if passes == "fused" else 1),
        input_bytes=4 * batch_size * 3 * image_size ** 2 * 4,
    )


def config_plan(config) -> tuple[MemoryPlan, int]:
    """The `MemoryPlan` of a `TrainConfig`'s step on one GPU (passes "auto" plans the GPU's sequential passes),
    with the model built on the CPU; and the image size it was built at."""
    from pathlib import Path

    from ..methods import build_method
    from ..models.build import build_model
    from .placement import freeze_unreachable

    cpu = torch.device("cpu")
    built = build_model(config.model, config.pretrained, config.image_size, cache_dir=Path(config.cache_dir).expanduser(),
                        seed=config.split_seed, device=cpu)
    freeze_unreachable(built.encoder, built.image_size, cpu)
    method = build_method(config.method, config)
    constrained = method.constraint is not None
    passes = config.passes if config.passes != "auto" else "sequential"
    network = constrained and method.multiplier is not None and config.dual == "network"
    plan = plan_memory(built.encoder, built.image_size, batch_size=config.batch_size,
                       accumulation=config.grad_accumulation, passes=passes if constrained else "sequential",
                       precision=config.precision, dual_hidden=config.dual_hidden if network else None,
                       embed_dim=getattr(built.encoder, "embed_dim", None))
    return plan, built.image_size


def print_plan(config) -> None:
    """`lore train --plan`: the memory model of the config's step, and whether it fits an 80 GB GPU (or the
    GPU this machine has)."""
    plan, size = config_plan(config)
    if torch.cuda.is_available():
        capacity, card = torch.cuda.get_device_properties(0).total_memory, torch.cuda.get_device_name(0)
    else:
        capacity, card = 80 * 10 ** 9, "an 80 GB GPU (H100/A100 80GB)"
    print(f"memory plan: {config.model} at {size} px, {config.method}, batch {config.batch_size} per device, "
          f"{config.grad_accumulation} micro-batch(es), {config.precision}, passes "
          f"{config.passes if config.passes != 'auto' else 'sequential (auto on a GPU)'}; for {card}")
    print(plan.describe(capacity))
