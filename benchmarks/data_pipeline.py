"""The training data pipeline: the share of a step's wall time spent waiting for the next batch."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

import lore
from lore import ImageEncoder, RobustStep
from timing import timed


def data_pipeline_benchmarks(args, device) -> dict:
    """Share of a training step's wall time spent waiting for data, with the default number of workers.

    Writes an ImageFolder of 224 px JPEGs, measures what decoding a batch costs in one process, sizes a
    LORE step (small ViT at 224 px, PGD iterations chosen) to cost about the same, then runs the training
    loop's pipeline (GlobalBatchSampler -> training_batches with the default workers, prefetch, then the
    step) and times every wait for the next batch. The first batches (the workers starting up, once per
    run) are excluded.
    """
    import tempfile

    import numpy as np
    from PIL import Image

    from lore.data.images import as_float_pixels, build_dataset, load_batch
    from lore.training.placement import resolve_workers
    from lore.training.loader import GlobalBatchSampler, training_batches

    batch, steps = 16, (24 if args.quick else 60)
    workers = resolve_workers(-1)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        digits = lore.load_digits_images(32)
        for i in range(batch * 8):  # ImageNet-like files: 500 x 375 px, ~100 kB textured JPEGs, resized to 224 on load
            small = Image.fromarray((digits.images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
            base = np.asarray(small.resize((500, 375), Image.BILINEAR), dtype=np.float64)
            pixels = np.clip(0.8 * base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            folder = Path(tmp) / f"class{int(digits.labels[i])}"
            folder.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
        dataset = build_dataset(tmp, 224)
        order = torch.arange(batch)
        load_batch(dataset, order)
        decode = statistics.median(timed(lambda: load_batch(dataset, order), device) for _ in range(3))

        torch.manual_seed(0)  # a patchify conv encoder: cheap enough that PGD iterations can size its step
        backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 16, stride=16), torch.nn.GELU(), torch.nn.Conv2d(32, 64, 1),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        encoder = ImageEncoder(backbone, (0.5,) * 3, (0.5,) * 3, embed_dim=64).to(device).train()
        images = torch.rand(batch, 3, 224, 224, device=device)

        def step_with(pgd_steps):
            optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-9)
            return RobustStep(encoder, lore.lore(0.1), optimizer, eps=4 / 255, pgd_steps=pgd_steps, measure_clean=False)

        def cost(pgd_steps):
            step = step_with(pgd_steps)
            step(images)
            return statistics.median(timed(lambda: step(images), device) for _ in range(3))

        one, five = cost(1), cost(5)
        per_iteration = max((five - one) / 4, 1e-6)
        pgd_steps = max(1, round(1 + (decode - one) / per_iteration))  # a step costing about one batch's decoding
        alone = one + (pgd_steps - 1) * per_iteration
        step = step_with(pgd_steps)
        sampler = GlobalBatchSampler(len(dataset), batch, seed=0, total_steps=steps)
        waits, totals = [], []
        batches = training_batches(dataset, sampler, workers=workers, pin_memory=device.type == "cuda")
        for _ in range(steps):
            began = time.perf_counter()
            x, _, _ = next(batches)
            x = as_float_pixels(x.to(device, non_blocking=True))  # uint8 from the workers, floats on the device
            waited = time.perf_counter() - began
            step(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            waits.append(waited)
            totals.append(time.perf_counter() - began)
        batches.close()
        skip = max(2, workers)
        step_seconds = statistics.median(totals[skip:])
    return {"seconds": {"decode_batch": decode, "training_step": step_seconds},
            "data_wait_fraction": sum(waits[skip:]) / sum(totals[skip:]),
            "data_pipeline": {"workers": workers, "batch": batch, "image_size": 224, "pgd_steps": pgd_steps,
                              "steps_measured": steps - skip, "step_alone_over_decode": alone / decode,
                              "step_in_pipeline_over_decode": step_seconds / decode}}
