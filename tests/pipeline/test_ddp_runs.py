"""torchrun with 2 gloo ranks (slow): every architecture `lore train` accepts trains under DDP, and a fault one
rank alone sees stops both ranks at the same batch with the same one-line error, without a hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_checkpoints import clip_folder, clip_vision_folder, dinov2_folder, siglip_folder, siglip_vision_folder

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
QUICK = ["--max-steps", "2", "--probe-every", "0", "--batch-size", "4", "--eps", "8/255", "--pgd-steps", "1",
         "--primal-steps", "2", "--device", "cpu", "--lr", "1e-4"]
LORE = ["--method", "lore", "--dual-hidden", "16"]


def torchrun(args: list[str], port: int, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={port}", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


MODELS = {  # name -> (writes the model, --model value, extra flags)
    "hf-dinov2": (lambda p: dinov2_folder(p / "m"), lambda p: f"hf:{p / 'm'}", LORE),
    # FARE and TeCoA take --primal-steps only as the equal-updates control: K = 2 updates under DDP, as before
    "hf-clip": (lambda p: clip_folder(p / "m"), lambda p: f"hf:{p / 'm'}", ["--method", "tecoa", "--baseline-updates",
                                                                             "equal"]),
    "hf-siglip": (lambda p: siglip_folder(p / "m"), lambda p: f"hf:{p / 'm'}", LORE),
    "hf-clip-vision": (lambda p: clip_vision_folder(p / "m"), lambda p: f"hf:{p / 'm'}",
                       ["--method", "fare", "--baseline-updates", "equal"]),
    "hf-siglip-vision": (lambda p: siglip_vision_folder(p / "m"), lambda p: f"hf:{p / 'm'}", LORE),
    "open_clip": (None, None, LORE),
    "timm-resnet": (lambda p: None, lambda p: "timm:resnet10t", ["--method", "fare", "--baseline-updates", "equal",
                                                                 "--image-size", "32"]),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_architecture_trains_two_steps_on_two_ranks(tmp_path, name, tiny_clip_dir, lore_cache):
    """Each hf: class (DINOv2, whose mask_token no image reaches: frozen, not a DDP error; CLIP and SigLIP whole
    and vision-only), an open_clip folder and a timm ResNet (batch norm: its buffers broadcast)."""
    write, model, extra = MODELS[name]
    if write is None:
        spec = f"local-dir:{tiny_clip_dir}"
    else:
        write(tmp_path)
        spec = model(tmp_path)
    out = tmp_path / "run"
    port = 29600 + list(MODELS).index(name)
    done = torchrun(["-m", "lore", "train", "--model", spec, "--data", "digits", "--output", str(out),
                     "--cache-dir", str(lore_cache), *QUICK, *extra], port, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 2
    assert summary["world_size"] == 2 and summary["ranks_agree"] is True
    if name == "hf-dinov2":
        assert ("frozen: 1 parameter(s) the image embedding never uses (backbone.vision_model.embeddings.mask_token)"
                in done.stdout)


@pytest.mark.parametrize("fault", ["nan", "collapse"])
def test_a_fault_on_one_rank_stops_both_with_the_same_error(tmp_path, fault, lore_cache):
    """Rank 1 alone meets a NaN batch (or sees its multiplier collapse): both ranks stop at the same batch, with
    the same one-line message, well within 60 s, instead of rank 0 waiting in an all-reduce for NCCL's timeout."""
    flags = ["--cache-dir", str(lore_cache), "--max-steps", "12", "--probe-every", "0", "--batch-size", "8",
             "--pgd-steps", "1", "--primal-steps", "1", "--dual-hidden", "16", "--device", "cpu"]
    began = time.monotonic()
    done = torchrun([str(HERE / "rank_faults.py"), fault, str(tmp_path), "--", *flags],
                    29620 + ["nan", "collapse"].index(fault), timeout=120)
    elapsed = time.monotonic() - began
    assert done.returncode != 0, done.stdout[-2000:]
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert messages[0] == messages[1] and "\n" not in messages[0], messages
    expected = ("training stopped at batch 2: lore met a non-finite loss or gradient" if fault == "nan"
                else "training stopped at batch 2: the multiplier collapsed")
    assert messages[0].startswith(expected), messages[0]
    assert elapsed < 60, f"{elapsed:.0f} s"
