"""The first GPU check: FARE and LORE steps through the training engine, timed, counted and checked.

    python benchmarks/gpu.py                       # on a GPU: ViT-B/32 (random weights), 224 px, bf16 (< 8 min)
    python benchmarks/gpu.py --device cpu --tiny   # anywhere (CI): a tiny ViT at 64 px, fp32 (about a minute)

For each method it runs `lore.training.engine.train` itself, under a one-rank process group so that the DDP
wrapper is in the loop: an image folder of uint8 PNGs decoded by DataLoader workers, PGD's start drawn on the
device, the engine's one host read per batch. It reports

- images/s and the seconds of a step (medians over the steps after the first, from metrics.jsonl), and the
  share of each phase (data wait, attack, primal, dual: CUDA-event times);
- peak device memory (`torch.cuda.max_memory_allocated`) beside `lore train --plan`'s prediction;
- host synchronisations per step: on a GPU the warnings of `torch.cuda.set_sync_debug_mode("warn")`, on a CPU
  the tensor reads counted by benchmarks/host_reads.py; both as the difference between a run of S and of 2S
  steps, divided by S, so the set-up, probe and export cancel out;
- on a GPU, whether a tiny model's LORE step on CUDA equals the same step on the CPU (same weights, same PGD
  start: the device noise is bit-identical on both): the largest relative difference of the updated weights.

It writes everything to --json (default gpu.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host_reads import count_host_reads  # noqa: E402

from lore.jsonio import write_json  # noqa: E402
from lore.provenance import provenance  # noqa: E402

TINY_CLIP = {"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
CPU_GPU_TOLERANCE = 1e-3  #: largest |w_cuda - w_cpu| / max|w_cpu - w_0| after one fp32 LORE step (SGD, TF32 off)


def write_folder(root: Path, images: int, size: int) -> Path:
    """An ImageFolder of `images` random PNGs of `size` px in 4 classes (decoded to uint8 by the engine)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def write_tiny_model(root: Path) -> str:
    """An open_clip local-dir folder of a tiny random CLIP; its --model value."""
    import open_clip
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    (root / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    clip = open_clip.create_model(f"local-dir:{root}", load_weights=False)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(root / "open_clip_model.safetensors"))
    return f"local-dir:{root}"


def one_rank_group(port: int) -> None:
    """A process group of one rank, so that the engine wraps the encoder in DDP as it would under torchrun."""
    import os

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo", rank=0, world_size=1)


def run(config_values: dict, steps: int, out: Path, device: torch.device, port: int) -> dict:
    """One `train` run of `steps` batches; its metrics, peak memory and host synchronisations."""
    from lore.training.config import TrainConfig
    from lore.training.engine import train

    config = TrainConfig(**{**config_values, "max_steps": steps, "output": str(out)})
    one_rank_group(port)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(config)
        torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        peak = torch.cuda.max_memory_allocated()
    else:
        with count_host_reads() as reads:
            train(config)
        syncs, peak = len(reads), None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"syncs": syncs, "peak_bytes": peak, "records": [r for r in records if "step_seconds" in r]}


def summarise(short: dict, long: dict, extra_steps: int, batch: int) -> dict:
    """The per-step figures of a method from its short and long runs."""
    timed = long["records"][1:]  # the first step pays for warm-up (allocator, cuDNN/cuBLAS heuristics)
    seconds = statistics.median(r["step_seconds"] for r in timed)
    phases = {name: statistics.median(r[f"{name}_seconds"] for r in timed)
              for name in ("data_wait", "attack", "primal", "dual")}
    return {"images_per_second": batch / seconds, "step_seconds": seconds,
            "phase_share": {name: value / seconds for name, value in phases.items()},
            "syncs_per_step": (long["syncs"] - short["syncs"]) / extra_steps,
            "peak_memory_gib": None if long["peak_bytes"] is None else long["peak_bytes"] / 2 ** 30}


def cuda_equals_cpu(tiny_model: str, work: Path) -> dict:
    """One fp32 LORE step (SGD) of a tiny model on CUDA and on the CPU from the same weights and PGD start;
    the largest weight difference relative to the largest weight change."""
    import lore
    from lore.models.build import build_model
    from lore.step import RobustStep
    from lore.training.noise import rank_rows, uniform_start

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    images = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    after = {}
    for name in ("cpu", "cuda"):
        device = torch.device(name)
        torch.manual_seed(0)
        built = build_model(tiny_model, None, 64, cache_dir=work, seed=0, device=device)
        before = {k: v.detach().cpu().clone() for k, v in built.encoder.state_dict().items()}
        # SGD: its update is proportional to the gradient, so float noise stays float-sized (AdamW's first update,
        # lr * sign(g), turns the noise of an almost-zero gradient into a full +-lr: docs/training.md)
        optimizer = torch.optim.SGD(built.encoder.parameters(), lr=1e-2)
        torch.manual_seed(0)
        step = RobustStep(built.encoder, lore.lore(0.1), optimizer, eps=4 / 255, pgd_steps=3, primal_steps=2)
        start = uniform_start(0, 0, rank_rows(0, 8), (3, 64, 64), 4 / 255, device)
        step(images.to(device), initial_delta=start).fused_read()
        after[name] = {k: v.detach().cpu() for k, v in built.encoder.state_dict().items()}
    change = max(float((after["cpu"][k] - before[k]).abs().max()) for k in before if before[k].is_floating_point())
    difference = max(float((after["cuda"][k] - after["cpu"][k]).abs().max()) for k in before
                     if before[k].is_floating_point())
    return {"max_weight_change": change, "max_cuda_cpu_difference": difference,
            "relative": difference / change, "tolerance": CPU_GPU_TOLERANCE,
            "equal": difference / change <= CPU_GPU_TOLERANCE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="", help="cuda (default when available) or cpu")
    parser.add_argument("--tiny", action="store_true", help="a tiny ViT at 64 px in fp32: proves the script runs")
    parser.add_argument("--batch-size", type=int, default=None, help="per device (default 256; --tiny: 8)")
    parser.add_argument("--steps", type=int, default=None, help="S: runs of S and 2S steps (default 6; --tiny: 2)")
    parser.add_argument("--json", type=Path, default=Path("gpu.json"))
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch = args.batch_size or (8 if args.tiny else 256)
    steps = args.steps or (2 if args.tiny else 6)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        size = 64 if args.tiny else 224
        tiny_model = write_tiny_model(work / "tiny")
        data = write_folder(work / "images", max(4 * batch, 64), size)
        common = {"model": tiny_model if args.tiny else "ViT-B-32", "data": str(data), "probe_data": str(data),
                  "probe_every": 0, "batch_size": batch, "eps": 4 / 255, "lr": 1e-5,
                  "precision": "fp32" if args.tiny or device.type == "cpu" else "bf16", "device": str(device),
                  "workers": 2 if args.tiny else 8, "cache_dir": str(work / "cache"), "checkpoint_every": 10_000,
                  "image_size": size}
        methods = {"fare": {"method": "fare"}, "lore": {"method": "lore"}}  # FARE: its authors' 1 update per batch
        results, port = {}, 29700
        for name, values in methods.items():
            runs = []
            for count in (steps, 2 * steps):
                port += 1
                runs.append(run({**common, **values}, count, work / f"{name}{count}", device, port))
            results[name] = summarise(*runs, extra_steps=steps, batch=batch)
            from lore.training.config import TrainConfig
            from lore.training.memory import config_plan

            plan, _ = config_plan(TrainConfig(**{**common, **values}))
            results[name]["planned_peak_gib"] = plan.peak / 2 ** 30
        check = cuda_equals_cpu(tiny_model, work / "cache") if torch.cuda.is_available() else None
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    result = {"provenance": provenance(device=str(device)), "card": card, "device": str(device),
              "setting": {"model": common["model"] if not args.tiny else "tiny open_clip ViT", "image_size": size,
                          "batch_per_device": batch, "steps": [steps, 2 * steps], "precision": common["precision"],
                          "pgd_steps": 10, "fare_updates_per_batch": 1, "lore_primal_steps": 5},
              "methods": results, "cuda_equals_cpu": check, "seconds": time.perf_counter() - began}
    write_json(args.json, result)
    print(f"{card}: {result['setting']}")
    print(f"{'method':<6}{'img/s':>9}{'s/step':>9}{'syncs/step':>12}{'peak GiB':>10}{'plan GiB':>10}  phases")
    for name, r in results.items():
        peak = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.2f}"
        shares = ", ".join(f"{k} {v:.0%}" for k, v in r["phase_share"].items())
        print(f"{name:<6}{r['images_per_second']:>9.1f}{r['step_seconds']:>9.3f}{r['syncs_per_step']:>12.1f}{peak:>10}"
              f"{r['planned_peak_gib']:>10.2f}  {shares}")
    if check is None:
        print("CUDA vs CPU step: not checked (no CUDA device)")
    else:
        print(f"CUDA vs CPU step: largest weight difference {check['relative']:.2e} of the largest change "
              f"(tolerance {CPU_GPU_TOLERANCE:g}): {'equal' if check['equal'] else 'DIFFERENT'}")
    print(f"wrote {args.json} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
