"""torch.compile and channels-last: LORE step time with and without, measured side by side."""

from __future__ import annotations

import copy
import time

import torch

import lore
from lore import RobustStep
from steps import build_encoder
from timing import interleaved_medians


def compile_benchmarks(args, device) -> dict:
    """LORE step time (K = 1) of the eager encoder over the torch.compile'd one, measured side by side."""
    torch.manual_seed(0)
    encoder, size = build_encoder(args.model, args.image_size)
    encoder = encoder.to(device).train()
    compiled = torch.compile(encoder)
    images = torch.rand(args.batch_size, 3, size, size, device=device)
    reference = lore.FrozenReference(encoder)

    def make(module):
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-9)
        step = RobustStep(module, lore.lore(0.1), optimizer, eps=4 / 255, reference=reference, pgd_steps=args.pgd_steps,
                          measure_clean=False)
        generator = torch.Generator(device=device).manual_seed(0)
        return lambda: step(images, generator=generator)

    started = time.perf_counter()
    eager, fast = make(encoder), make(compiled)
    fast()  # compilation happens here (forward, backward and the attack's input-gradient graphs)
    compile_seconds = time.perf_counter() - started
    t = interleaved_medians({"lore_step_eager": eager, "lore_step_compiled": fast}, args.repeats, device)
    conv = lore.load_timm("convnext_atto").to(device).train()  # a convolutional tower, random weights, at 64 px
    conv_images = torch.rand(args.batch_size, 3, 64, 64, device=device)
    conv_last = copy.deepcopy(conv).to(memory_format=torch.channels_last)

    def conv_step(module, images):
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-9)
        step = RobustStep(module, lore.lore(0.1), optimizer, eps=4 / 255, pgd_steps=args.pgd_steps, measure_clean=False)
        return lambda: step(images, generator=torch.Generator(device=device).manual_seed(0))

    t.update(interleaved_medians({
        "convnext_step_contiguous": conv_step(conv, conv_images),
        "convnext_step_channels_last": conv_step(conv_last, conv_images.contiguous(memory_format=torch.channels_last)),
    }, args.repeats, device))
    return {"seconds": {**t, "compile_first_step": compile_seconds},
            "compile_speedup": t["lore_step_eager"] / t["lore_step_compiled"],
            "channels_last_speedup": t["convnext_step_contiguous"] / t["convnext_step_channels_last"]}
