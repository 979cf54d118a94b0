"""The training engine behind `lore train`: one process or torchrun DDP, resumable.

`train(config)` builds phi_0, the data, the method and the optimisers from a `TrainConfig`
(`lore.training.assembly`), then runs Algorithm 1 batch by batch with a progress bar, JSON-lines metrics,
held-out probes, atomic checkpoints (every N batches, at the end, and on SIGTERM/SIGINT), and finally exports
the encoder and draws the training curves. Everything a batch depends on — its indices, its PGD start — is
derived from (seed, step), so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from constrained import FixedMargin

from ..data.images import as_float_pixels
from ..models.export import export_encoder
from ..models.model_card import write_model_card
from ..progress import progress
from ..provenance import provenance
from ..jsonio import write_json
from ..step_result import StepResult
from ..units import format_eps
from . import health
from .assembly import Run, build_run, cosine_with_warmup
from .checkpoint import CheckpointError
from .config import TrainConfig
from .distributed import DistInfo, init_distributed, parameters_agree, shutdown_distributed
from .loader import GlobalBatchSampler, prefetch_batches, training_batches
from .metrics_log import MetricsLog
from .noise import rank_rows, uniform_start
from .run_folder import restart_advice


@dataclass
class RunResult:
    """How a run ended: "finished" or "interrupted", at which step (having started at `start_step`), and where its files are."""

    status: str
    step: int
    total_steps: int
    output: Path
    ranks_agree: bool = True
    start_step: int = 0
    unreadable_images: int = 0


def train(config: TrainConfig, *, resume: bool = False) -> RunResult:
    """Runs (or resumes) the training that `config` describes. See the module docstring."""
    info = init_distributed(config.device)
    try:
        result = _train(config, resume, info)
    except BaseException:
        shutdown_distributed(info)
        raise
    shutdown_distributed(info, synchronize=True)
    return result


def _train(config: TrainConfig, resume: bool, info: DistInfo) -> RunResult:
    run = build_run(config, resume, info)
    status, step = _loop(run)
    return _finish(run, status, step)


def _loop(run: Run) -> tuple[str, int]:
    """Trains from batch `run.start` to `run.total` (or a stop signal); returns (status, batches done)."""
    config, info = run.config, run.info
    metrics = MetricsLog(run.output, tensorboard=config.tensorboard, enabled=info.is_main)
    bar = progress(run.total, f"{config.method} eps={format_eps(config.eps)}", initial=run.start, unit="batch",
                   enabled=info.is_main)
    batches = _batches(run)
    collapsed = 0  # consecutive batches with a collapsed multiplier (see health.stop_flags), the same on every rank
    try:
        with health.StopRequest() as stop:
            if run.start == 0 and info.is_main and config.probe_every:
                metrics.write(0, {"epoch": 0, **run.probe()})
            for step in range(run.start, run.total):
                began = time.perf_counter()
                result, data_wait = _train_batch(run, step, batches)
                flags = health.stop_flags(result, stop.signal is not None)
                if info.enabled:
                    torch.distributed.all_reduce(flags)  # SUM: > 0 where some rank saw it
                seen = dict(zip(health.STOP_FLAGS, result.fused_read(flags, check=False)))  # the batch's one host read
                seconds = time.perf_counter() - began  # the read waited for the device: the batch's real time
                run.longest["batch"] = max(run.longest["batch"], seconds)
                collapsed = collapsed + 1 if seen["collapsed"] > 0 else 0
                health.stop_if_broken(step, seen, collapsed, method=config.method, dual_lr=config.dual_lr,
                                      world_size=info.world_size, checkpoint_path=run.checkpoint_path)
                done = step + 1
                _report_batch(run, done, result, seconds, data_wait, bar, metrics)
                if done % config.checkpoint_every == 0 and done < run.total:
                    run.checkpoint(done)
                if seen["signal"] > 0:
                    run.checkpoint(done)
                    return "interrupted", done
            run.checkpoint(run.total)
            return "finished", run.total
    finally:
        bar.close()
        batches.close()  # stops the data-loading processes
        metrics.close()


def _batches(run: Run):
    """This rank's batches from `run.start` on: decoded by the workers into uint8, prepared ahead within
    `--prefetch-mib`, pinned on a GPU."""
    config, info = run.config, run.info
    sampler = GlobalBatchSampler(len(run.train_set), config.batch_size, world_size=info.world_size, rank=info.rank,
                                 seed=config.seed, start_step=run.start, total_steps=run.total)
    prefetch = 2
    if run.workers:  # uint8 batches: 3 H W bytes per image
        batch_bytes = config.batch_size * 3 * run.built.image_size ** 2
        prefetch = prefetch_batches(batch_bytes, run.workers, config.prefetch_mib * 2 ** 20)
    return training_batches(run.train_set, sampler, workers=run.workers, pin_memory=run.device.type == "cuda",
                            on_unreadable=run.unreadable, prefetch=prefetch)


def _train_batch(run: Run, step: int, batches) -> tuple[StepResult, float]:
    """The next batch of `batches` through the step and the LR schedule; returns (result, seconds waited for the
    batch).

    The batch crosses to the device as it came (uint8 from image files, through pinned memory, without
    blocking) and becomes float pixels there; PGD's start is drawn on the device for this rank's global rows.
    Nothing here reads a tensor back: the loop's one read per batch comes after."""
    config = run.config
    waiting = time.perf_counter()
    images, labels, _ = next(batches)
    data_wait = time.perf_counter() - waiting
    images = as_float_pixels(images.to(run.device, non_blocking=True))
    labels = labels.to(run.device, non_blocking=True)
    if config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    start_noise = uniform_start(config.seed, step, rank_rows(run.info.rank, config.batch_size), tuple(images.shape[1:]),
                                config.eps, run.device)
    try:
        result = run.step_fn(images, labels=labels, initial_delta=start_noise)
    except FloatingPointError as error:  # --eager-checks: raised where the check is made, before the update
        raise FloatingPointError(f"training stopped at batch {step}: {error}. "
                                 + restart_advice(run.checkpoint_path)) from error
    run.scheduler.step()
    return result, data_wait


def _zero_margin(method) -> bool:
    """Whether the method's constraint has a margin of 0 (naive's penalty): no sample can lie strictly inside."""
    margin = getattr(method.constraint, "margin", None)
    return isinstance(margin, FixedMargin) and margin.value == 0


def _report_batch(run: Run, done: int, result: StepResult, seconds: float, data_wait: float, bar,
                  metrics: MetricsLog) -> None:
    """The progress bar's postfix every batch; metrics (and the probe) every log_every/probe_every and at the end."""
    config = run.config
    bar.update(1)
    postfix = {"loss": f"{result.robust_loss:.3g}"}
    if result.constraint is not None:  # constrained methods only; a zero margin (naive) has no share inside it
        postfix["sat"] = "–" if _zero_margin(run.step_fn.method) else f"{result.constraint.satisfied_fraction:.2f}"
    run.trained_seconds += seconds
    last = done == run.total  # the end of training is always logged and probed
    if last:  # the closing line shows the run's mean rate, not the last batch's
        postfix["img/s (run mean)"] = f"{(done - run.start) * run.global_batch / run.trained_seconds:.3g}"
    else:
        postfix["img/s"] = f"{run.global_batch / seconds:.3g}"
    postfix["data wait"] = f"{100 * data_wait / seconds:.0f}%"
    bar.set_postfix(postfix)
    if run.info.is_main and (done % config.log_every == 0 or last):
        record = {"epoch": (done - 1) // run.per_epoch, "lr": run.scheduler.get_last_lr()[0],
                  "images_per_second": run.global_batch / seconds, "step_seconds": seconds,
                  "data_wait_seconds": data_wait, **result.as_dict()}
        if config.probe_every and (done % config.probe_every == 0 or last):
            record.update(run.probe())
        metrics.write(done, record)


def _finish(run: Run, status: str, step: int) -> RunResult:
    """Checks the ranks agree; on rank 0 writes summary.json and, for a finished run, the export and the plots."""
    info, config = run.info, run.config
    agree = parameters_agree(run.encoder, info, run.device)
    unreadable = run.unreadable.count if run.unreadable else 0
    if info.is_main:
        longest = run.longest
        summary = {"status": status, "start_step": run.start, "step": step, "total_steps": run.total,
                   "passes": run.passes, "workers": run.workers, "world_size": info.world_size, "ranks_agree": agree,
                   "unreadable_images": unreadable,
                   "samples_without_image": run.unreadable.without_image if run.unreadable else 0,
                   # a SIGTERM waits for the current batch, then a checkpoint: the grace period a scheduler must
                   # give (torchrun --shutdown-timeout, SLURM KillWait) is at least their sum
                   "longest_batch_seconds": round(longest["batch"], 3),
                   "longest_checkpoint_seconds": round(longest["checkpoint"], 3),
                   "stop_needs_seconds": round(longest["batch"] + longest["checkpoint"], 3)}
        if status == "finished":
            summary["export"] = str(export_encoder(run.built, config.model, run.output / "export", replace=True))
            summary["provenance"] = provenance(model=run.encoder, data=run.fingerprint["inputs"]["data"])
            from .plots import plot_run

            summary["plots"] = [str(p) for p in plot_run(run.output, rho=config.rho)]
        write_json(run.output / "summary.json", summary)
        if status == "finished":
            write_model_card(run.output)  # "not evaluated" until `lore eval` scores the run folder
    return RunResult(status, step, run.total, run.output, agree, run.start, unreadable)


__all__ = ["RunResult", "train", "cosine_with_warmup", "CheckpointError"]
