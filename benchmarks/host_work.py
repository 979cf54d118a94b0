"""What the training engine's host does per step, at the paper's global batch: the work a GPU run pays on the CPU.

At 8 GPUs x 448 images of 224 px (one rank's share) the host turns decoded images into a batch (the collation,
in a DataLoader worker), copies it into page-locked memory for the asynchronous transfer (the pin-memory thread),
and takes the sampler's next indices. Everything else of a step (normalisation, PGD's random start, the attack,
the updates) runs on the device. Each part is timed here as the engine's own code does it, on this CPU, with one
thread (DataLoader workers run with one). The target is 5 % of the LORE step that the paper's Table 17 implies
(551 s for 50 iterations on 4 x H100: 11 s), i.e. 0.55 s.
"""

from __future__ import annotations

import statistics
import time

import torch

from lore.training.loader import GlobalBatchSampler, _collate

PAPER_STEP_SECONDS = 551 / 50  #: Table 17: 50 LORE iterations of ViT-B/32 on 4 x H100
WORLD, BATCH, SIZE = 8, 448, 224


def _median_seconds(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def host_work_benchmarks(args, device) -> dict:
    """{"engine_host_seconds_per_step": seconds, "host_work": its parts and setting, "seconds": {...}}."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    began = time.perf_counter()
    try:
        repeats = 3 if args.quick else 7
        generator = torch.Generator().manual_seed(0)
        # decoded images as the workers hold them: uint8 [3, 224, 224] each, with label, index and no messages
        items = [(torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=generator), 0, i, ())
                 for i in range(BATCH)]
        collate = _median_seconds(lambda: _collate(items), repeats)
        batch = _collate(items)[0]
        pinnable = torch.cuda.is_available()

        def page_locked_copy():
            return batch.pin_memory() if pinnable else torch.empty_like(batch).copy_(batch)

        copy = _median_seconds(page_locked_copy, repeats)
        sampler = GlobalBatchSampler(1_281_167, BATCH, world_size=WORLD, rank=3, seed=0, total_steps=50)
        indices = iter(sampler)
        next(indices)  # the epoch's permutation, drawn once an epoch
        sample = _median_seconds(lambda: next(indices), repeats)
    finally:
        torch.set_num_threads(threads)
    total = collate + copy + sample
    return {
        "engine_host_seconds_per_step": total,
        "host_work": {"collate_seconds": collate, "page_locked_copy_seconds": copy, "sampler_seconds": sample,
                      "noise_on_host_seconds": 0.0,  # drawn on the device (lore.training.noise)
                      "share_of_paper_step": total / PAPER_STEP_SECONDS, "paper_step_seconds": PAPER_STEP_SECONDS,
                      "setting": {"world_size": WORLD, "batch_per_rank": BATCH, "image_size": SIZE,
                                  "batch_dtype": str(batch.dtype), "threads": 1, "pinned": pinnable,
                                  "repeats": repeats}},
        "seconds": {"host_work": time.perf_counter() - began},
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    found = host_work_benchmarks(parser.parse_args(), torch.device("cpu"))
    parts = found["host_work"]
    print(f"engine host work per step (8 x 448, 224 px, one rank): {found['engine_host_seconds_per_step']:.3f} s = "
          f"{parts['share_of_paper_step']:.1%} of Table 17's {parts['paper_step_seconds']:.1f} s step "
          f"(collate {parts['collate_seconds']:.3f}, page-locked copy {parts['page_locked_copy_seconds']:.3f}, "
          f"sampler {parts['sampler_seconds']:.6f}, noise on the host {parts['noise_on_host_seconds']:.1f})")
