"""Performance ratios of LORE vs FARE, vs their physical floor, and of our attacks vs torchattacks.

Everything is measured side by side in one run, each measurement repeated
(interleaved round-robin, so drift hits all alike) and reported as medians.
Absolute times on a shared machine mean little; the ratios are the result.

    python benchmarks/run.py [--json results.json] [--quick] [--model tiny-vit | open_clip NAME | timm:NAME]

Keys written (see docs/performance.md):
  lore_over_fare_step, lore_over_fare_step_k5, lore_step_over_floor, fare_step_over_floor, floor_ratio,
  apgd_time_over_torchattacks, apgd_robust_acc_minus_torchattacks, eval_time_over_naive,
  lore_over_fare_peak_memory (the memory-lean sequential LORE step; lore_fused_over_fare_peak_memory for the fused
  one), data_wait_fraction, compile_speedup (+ the underlying medians in seconds / bytes).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import lore
from lore import ImageEncoder, RobustStep
from lore.evaluation import EvalSettings, apgd_ce, robust_accuracy

TINY_VIT = {"embed_dim": 128, "vision_cfg": {"image_size": 64, "layers": 4, "width": 192, "patch_size": 8, "head_width": 64},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


def build_encoder(name: str, image_size: int | None) -> tuple[ImageEncoder, int]:
    """The benchmarked encoder and its input side."""
    if name == "tiny-vit":
        import open_clip

        clip = open_clip.CLIP(TINY_VIT["embed_dim"], TINY_VIT["vision_cfg"], TINY_VIT["text_cfg"])
        return ImageEncoder(clip.visual, (0.5,) * 3, (0.5,) * 3, embed_dim=TINY_VIT["embed_dim"]), 64
    if name.startswith("timm:"):
        encoder = lore.load_timm(name[5:], image_size=image_size)
        return encoder, image_size or encoder.backbone.pretrained_cfg["input_size"][-1]
    model = lore.load_open_clip(name)
    return model.encoder, image_size or model.image_size[0]


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_medians(tasks: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Runs every task once to warm up, then `repeats` round-robin rounds; the median seconds per task."""
    for fn in tasks.values():
        fn()
    samples = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, fn in tasks.items():
            samples[name].append(timed(fn, device))
    return {name: statistics.median(values) for name, values in samples.items()}


class _Held:
    """A tensor saved for backward, counted while the autograd graph holds it."""

    live = 0
    peak = 0

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor, self.size = tensor, tensor.numel() * tensor.element_size()
        _Held.live += self.size
        _Held.peak = max(_Held.peak, _Held.live)

    def __del__(self) -> None:
        _Held.live -= self.size


def saved_activation_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of tensors held for backward while `fn` runs (the CPU proxy of peak activation memory)."""
    _Held.live = _Held.peak = 0
    with torch.autograd.graph.saved_tensors_hooks(_Held, lambda held: held.tensor):
        fn()
    return _Held.peak


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        fn()
        return torch.cuda.max_memory_allocated()
    return saved_activation_bytes(fn)


def step_benchmarks(args, device) -> dict:
    torch.manual_seed(0)
    encoder, size = build_encoder(args.model, args.image_size)
    encoder = encoder.to(device).train()
    images = torch.rand(args.batch_size, 3, size, size, device=device)
    eps, steps = 4 / 255, args.pgd_steps
    reference = lore.FrozenReference(encoder)

    def make(method, k, passes="fused"):
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-9)  # tiny lr: the weights barely move between repeats
        step = RobustStep(encoder, method, optimizer, eps=eps, reference=reference, pgd_steps=steps, primal_steps=k,
                          measure_clean=False, passes=passes)
        generator = torch.Generator(device=device).manual_seed(0)
        return lambda: step(images, generator=generator)

    ref = reference(images)

    def attack_pass():  # one PGD iteration: forward + input gradient
        x = images.clone().requires_grad_(True)
        torch.autograd.grad(F.mse_loss(encoder(x), ref, reduction="sum"), x)

    def primal_pass(batch):
        x = batch.detach()
        encoder.zero_grad(set_to_none=True)
        encoder(x).pow(2).sum().backward()

    doubled = torch.cat([images, images])
    tasks = {
        "fare_step": make(lore.fare(), 1),
        "lore_step": make(lore.lore(0.1), 1),
        "fare_step_k5": make(lore.fare(), 5),
        "lore_step_k5": make(lore.lore(0.1), 5),
        "attack_pass": attack_pass,
        "primal_pass_b": lambda: primal_pass(images),
        "primal_pass_2b": lambda: primal_pass(doubled),
        "reference_forward": lambda: reference(images),
    }
    t = interleaved_medians(tasks, args.repeats, device)
    fare_floor = steps * t["attack_pass"] + t["primal_pass_b"] + t["reference_forward"]
    lore_floor = steps * t["attack_pass"] + t["primal_pass_2b"] + t["reference_forward"]
    fare_floor_k5 = steps * t["attack_pass"] + 5 * t["primal_pass_b"] + t["reference_forward"]
    lore_floor_k5 = steps * t["attack_pass"] + 5 * t["primal_pass_2b"] + t["reference_forward"]
    tasks["lore_step_sequential"] = make(lore.lore(0.1), 1, passes="sequential")
    memory = {name: peak_memory(tasks[name], device) for name in ("fare_step", "lore_step", "lore_step_sequential")}
    return {
        "seconds": t,
        "fare_floor_seconds": fare_floor,
        "lore_floor_seconds": lore_floor,
        "lore_over_fare_step": t["lore_step"] / t["fare_step"],
        "lore_over_fare_step_k5": t["lore_step_k5"] / t["fare_step_k5"],
        "fare_step_over_floor": t["fare_step"] / fare_floor,
        "lore_step_over_floor": t["lore_step"] / lore_floor,
        "fare_step_k5_over_floor": t["fare_step_k5"] / fare_floor_k5,
        "lore_step_k5_over_floor": t["lore_step_k5"] / lore_floor_k5,
        "floor_ratio": lore_floor / fare_floor,
        "peak_memory_bytes": memory,
        "lore_over_fare_peak_memory": memory["lore_step_sequential"] / memory["fare_step"],
        "lore_fused_over_fare_peak_memory": memory["lore_step"] / memory["fare_step"],
    }


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

    from lore.training.data import build_dataset, load_batch
    from lore.training.engine import resolve_workers
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
            x = x.to(device, non_blocking=True)
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


def digits_classifier(device):
    torch.manual_seed(0)
    train, test = lore.load_digits_images(16).split(held_out=0.25, seed=0)
    encoder = lore.small_digits_encoder(embed_dim=32, width=16)
    head = lore.pretrain_classifier(encoder, train, steps=200, seed=0)
    model = torch.nn.Sequential(encoder, head).to(device).eval().requires_grad_(False)
    return model, test.images.to(device), test.labels.to(device)


def attack_benchmarks(args, device) -> dict:
    import torchattacks

    model, x, y = digits_classifier(device)
    n = 150 if args.quick else len(y)
    x, y = x[:n], y[:n]
    eps, n_iter = 8 / 255, (20 if args.quick else 100)
    results = {}

    def ours():
        fooled, _ = apgd_ce(model, x, y, eps=eps, n_iter=n_iter, generator=torch.Generator(device=device).manual_seed(0))
        results["ours"] = 1 - fooled.float().mean().item()

    def theirs():
        adversarial = torchattacks.APGD(model, norm="Linf", eps=eps, steps=n_iter, n_restarts=1, loss="ce", seed=0)(x, y)
        with torch.no_grad():
            results["theirs"] = (model(adversarial).argmax(1) == y).float().mean().item()

    t = interleaved_medians({"apgd_ours": ours, "apgd_torchattacks": theirs}, max(3, args.repeats // 2), device)

    settings = EvalSettings(eps=[eps], n_iter=n_iter, n_targets=9, progress=False)

    def cascade():
        results["cascade"] = robust_accuracy(model, x, y, eps, settings)

    def naive():  # both attacks on every point, no skipping
        g = torch.Generator(device=device).manual_seed(0)
        a, _ = apgd_ce(model, x, y, eps=eps, n_iter=n_iter, generator=g)
        b, _ = apgd_dlr_targeted_all(model, x, y, eps, n_iter, g)
        results["naive"] = 1 - (a | b).float().mean().item()

    t.update(interleaved_medians({"eval_cascade": cascade, "eval_naive": naive}, 3, device))
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    return {
        "seconds": t,
        "apgd_time_over_torchattacks": t["apgd_ours"] / t["apgd_torchattacks"],
        "apgd_robust_acc_ours": results["ours"],
        "apgd_robust_acc_torchattacks": results["theirs"],
        "apgd_robust_acc_minus_torchattacks": 100 * (results["ours"] - results["theirs"]),
        "eval_time_over_naive": t["eval_cascade"] / t["eval_naive"],
        "eval_model_clean_accuracy": clean,
        "eval_model_robust_accuracy": results["cascade"]["apgd-ce+apgd-t"],
        "eval_naive_robust_accuracy": results["naive"],
    }


def apgd_dlr_targeted_all(model, x, y, eps, n_iter, generator):
    """APGD-DLR-T against all 9 targets on every point (no point is ever skipped): the naive evaluation."""
    from lore.evaluation.apgd import apgd, dlr_targeted_loss, target_classes

    with torch.no_grad():
        ranking = model(x).sort(dim=1, descending=True)[1]
    fooled = torch.zeros(len(y), dtype=torch.bool, device=x.device)
    for rank in range(1, 10):
        target = target_classes(ranking, y, rank)
        hit, _ = apgd(model, x, y, lambda logits, rows: dlr_targeted_loss(logits, y[rows], target[rows]), eps=eps, n_iter=n_iter,
                      generator=generator)
        fooled |= hit
    return fooled, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="few repeats and small sizes: proves it runs")
    parser.add_argument("--model", default="tiny-vit", help="tiny-vit (built in code), an open_clip name, or timm:NAME")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="")
    args = parser.parse_args()
    args.batch_size = args.batch_size or (8 if args.quick else 32)
    args.repeats = args.repeats or (2 if args.quick else 7)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    steps = step_benchmarks(args, device)
    pipeline = data_pipeline_benchmarks(args, device)
    compiled = compile_benchmarks(args, device)
    attacks = attack_benchmarks(args, device)
    result = {
        "machine": {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu": platform.processor() or platform.machine()},
        "setting": {"model": args.model, "batch_size": args.batch_size, "pgd_steps": args.pgd_steps, "repeats": args.repeats,
                    "quick": args.quick},
        **{k: v for k, v in steps.items() if k != "seconds"},
        **{k: v for k, v in attacks.items() if k != "seconds"},
        **{k: v for k, v in pipeline.items() if k != "seconds"},
        **{k: v for k, v in compiled.items() if k != "seconds"},
        "seconds": {**steps["seconds"], **attacks["seconds"], **pipeline["seconds"], **compiled["seconds"]},
    }
    rows = [
        ("lore_over_fare_step (K=1)", result["lore_over_fare_step"], "<= 1.05 x floor_ratio"),
        ("lore_over_fare_step_k5", result["lore_over_fare_step_k5"], ""),
        ("floor_ratio", result["floor_ratio"], "~1.18 on a small ViT here"),
        ("lore_step_over_floor", result["lore_step_over_floor"], "<= 1.10"),
        ("fare_step_over_floor", result["fare_step_over_floor"], "<= 1.10"),
        ("apgd_time_over_torchattacks", result["apgd_time_over_torchattacks"], "<= 0.8"),
        ("apgd_robust_acc_minus_torchattacks (pp)", result["apgd_robust_acc_minus_torchattacks"], "<= 0.5"),
        ("eval_time_over_naive", result["eval_time_over_naive"], "<= 0.7"),
        ("lore_over_fare_peak_memory (sequential)", result["lore_over_fare_peak_memory"], "<= 1.15"),
        ("lore_fused_over_fare_peak_memory", result["lore_fused_over_fare_peak_memory"], ""),
        ("data_wait_fraction", result["data_wait_fraction"], "<= 0.05"),
        ("compile_speedup", result["compile_speedup"], "reported (> 1: compile is faster)"),
        ("channels_last_speedup (ConvNeXt)", result["channels_last_speedup"], "reported (> 1: channels-last is faster)"),
    ]
    print(f"{'ratio':<42}{'value':>9}  target")
    for name, value, target in rows:
        print(f"{name:<42}{value:>9.3f}  {target}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
