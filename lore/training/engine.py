"""The training engine behind `lore train`: one process or torchrun DDP, resumable.

`train(config)` builds phi_0, the data, the method and the optimisers from a
`TrainConfig`, then runs Algorithm 1 batch by batch with a progress bar,
JSON-lines metrics, held-out probes, atomic checkpoints (every N batches, at
the end, and on SIGTERM/SIGINT), and finally exports the encoder and draws
the training curves. Everything a batch depends on — its indices, its PGD
start — is derived from (seed, step), so a resumed run continues exactly
where the interrupted one stopped.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from constrained import FixedMargin, NormMargin

from ..data.images import (TensorImages, as_float_pixels, batches_per_epoch, build_dataset, check_data_spec,
                           check_same_classes, dataset_classnames, probe_subset, read_class_list, split_disjoint)
from ..data.specs import IMAGE_EXTENSIONS, PROBE_SHARE, UnreadableImageError, is_image_folder, is_shard_spec
from ..devices import bf16_warning, resolve_device
from ..data.unreadable import UNREADABLE_LIST, UnreadableLog
from ..files import open_append, read_own_text, refuse_symlink
from ..jsonio import dumps, write_json, write_text_atomic
from ..methods import build_method
from ..heads import ZeroShotHead
from ..models.build import BuiltModel, build_head, build_model
from ..models.export import check_exportable, export_encoder, exported_weights
from ..models.model_card import write_model_card
from ..provenance import dataset_fingerprint, model_fingerprint, provenance
from ..units import format_eps
from .disk import predict as predict_disk_use
from ..registry import method_entry
from ..progress import progress
from ..reference import FrozenReference
from ..step import RobustStep
from ..step_result import PROBLEMS, StepResult
from .checkpoint import (FORMAT_VERSION, CheckpointError, check_inputs, load_checkpoint, remove_stale_temporaries,
                         save_atomic)
from .config import TrainConfig
from .distributed import DistInfo, init_distributed, parameters_agree, shutdown_distributed
from .loader import GlobalBatchSampler, prefetch_batches, training_batches
from .noise import rank_rows, uniform_start
from .probe import probe

LAST = "last.pt"
PROBE_FILES = "probe_images.txt"  #: the images held out of a --data folder for the probe, one path per line


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


def make_method(config: TrainConfig):
    """The `Method` a config names, with its parameters (the registry says which config fields it takes)."""
    return build_method(config.method, config)


def cosine_with_warmup(total: int, warmup: int):
    """LR multiplier per batch: linear warm-up, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return factor


#: a multiplier whose largest value stays at or below COLLAPSED_LAMBDA for COLLAPSE_PATIENCE batches while most of
#: the batch violates its margin has collapsed: the run is degenerate, not finished
COLLAPSED_LAMBDA = 1e-6
COLLAPSE_PATIENCE = 20


#: the order of the per-batch stop flags every rank contributes to (one all-reduce, one host read per batch)
STOP_FLAGS = ("non-finite", "pixels", "collapsed", "signal", "violating_share")


def _stop_flags(result: StepResult, signalled: bool) -> torch.Tensor:
    """This rank's view of the batch as a [5] float tensor on the device, in `STOP_FLAGS` order, with no host
    read: its failed checks, whether its multiplier looks collapsed (lambda ~ 0 everywhere while most of its
    rows violate), whether it received a stop signal, and the share of its rows outside the margin. Summed over
    the ranks, a flag > 0 means some rank saw it, so every rank takes the same decision at the same batch."""
    pending = result.pending()
    problems = pending[:len(PROBLEMS)]  # [non-finite, pixels]
    statistics = pending[result.statistics_slice]
    zero = problems.new_zeros(())
    if statistics.numel():  # [violation_mean, violation_max, satisfied_fraction, multiplier_mean, multiplier_max]
        collapsed = ((statistics[4] <= COLLAPSED_LAMBDA) & (statistics[2] < 0.5)).float()
        violating = 1 - statistics[2]
    else:  # no constraint (FARE, TeCoA)
        collapsed, violating = zero, zero
    signal_flag = torch.full((), float(signalled), device=problems.device)  # a fill, not a host-to-device copy
    return torch.stack([problems[0], problems[1], collapsed, signal_flag, violating])


def _restart_advice(checkpoint_path: Path) -> str:
    """What is left to restart from, checked rather than assumed, and how to restart with other settings."""
    new_run = ("A --resume keeps the run's settings (it would repeat this); start a new run with a lower --lr or "
               "--dual-lr and another --output.")
    if not checkpoint_path.is_file():
        return f"No checkpoint was written yet ({checkpoint_path} does not exist). " + new_run
    try:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        finite = all(torch.isfinite(v).all() for v in state["encoder"].values() if v.is_floating_point())
        where = f"{checkpoint_path} (batch {state['step']})"
    except Exception as error:  # any unreadable file is reported, not raised over the real failure
        return f"The checkpoint {checkpoint_path} cannot be read ({error}). " + new_run
    if not finite:
        return f"The last checkpoint, {where}, already holds non-finite weights. " + new_run
    return f"The last checkpoint, {where}, holds finite weights. " + new_run


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked between batches."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


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


def _device(config: TrainConfig, info: DistInfo) -> torch.device:
    """The training device; a bare --device cuda means this rank's GPU (DDP's device_ids need the index)."""
    if config.device and config.device != "cuda":
        return resolve_device(config.device)
    if config.device == "cuda" or torch.cuda.is_available():
        resolve_device("cuda")  # refuses a machine without CUDA by name
        return torch.device(f"cuda:{info.local_rank}")
    return torch.device("cpu")


def resolve_workers(workers: int) -> int:
    """Data-loading processes: `workers`, or for -1 min(8, the CPU cores this process may use)."""
    if workers >= 0:
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cores)


def resolve_passes(passes: str, device: torch.device) -> str:
    """'auto' -> 'sequential' on GPUs (memory decides the batch there), 'fused' elsewhere (fastest on a CPU)."""
    if passes != "auto":
        return passes
    return "sequential" if device.type == "cuda" else "fused"


def enable_grad_checkpointing(encoder: torch.nn.Module, model_name: str) -> None:
    """Turns on activation checkpointing in an open_clip or timm tower; refuses towers that have none."""
    backbone = getattr(encoder, "backbone", encoder)
    switch = getattr(backbone, "set_grad_checkpointing", None)
    if switch is None:
        raise ValueError(f"grad_checkpointing: model {model_name!r} ({type(backbone).__name__}) has no activation "
                         "checkpointing; it is available for open_clip and timm towers")
    switch(True)


def freeze_unreachable(encoder: torch.nn.Module, image_size: int, device: torch.device) -> list[str]:
    """Stops training the parameters the image embedding never uses, and returns their names.

    A tower may carry parameters its image forward pass does not reach (Hugging Face `Dinov2Model`'s
    `embeddings.mask_token`, used only for masked-image pretraining). No gradient ever reaches them, which DDP
    (with `find_unused_parameters=False`, its fast setting) takes for a rank that fell out of step and stops
    on. One forward and backward pass of two blank images in eval mode finds them; they are set not to
    require gradients, so neither the optimizer nor DDP sees them, and they keep their values in every export.

    Args:
        encoder: the image encoder, images [B, 3, S, S] in [0, 1] -> [B, D].
        image_size: S.
        device: where the encoder lives.
    """
    trainable = [(name, p) for name, p in encoder.named_parameters() if p.requires_grad]
    was_training = encoder.training
    encoder.eval()
    try:
        probe = torch.zeros(2, 3, image_size, image_size, device=device, requires_grad=False)
        reached = torch.autograd.grad(encoder(probe).float().sum(), [p for _, p in trainable], allow_unused=True)
    finally:
        encoder.train(was_training)
    unreachable = []
    for (name, parameter), grad in zip(trainable, reached):
        if grad is None:
            parameter.requires_grad_(False)
            unreachable.append(name)
    return unreachable


def has_running_statistics(module: torch.nn.Module) -> bool:
    """Whether training changes some buffer of `module` (batch norm's running statistics), which DDP must then
    broadcast from rank 0 at every forward."""
    return any(isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.track_running_stats for m in module.modules())


def _train(config: TrainConfig, resume: bool, info: DistInfo) -> RunResult:
    run = _build(config, resume, info)
    status, step = _loop(run)
    return _finish(run, status, step)


@dataclass
class _Run:
    """What `_build` made of a config: the loop trains it, `_finish` exports and summarises it."""

    config: TrainConfig
    info: DistInfo
    device: torch.device
    fingerprint: dict
    built: BuiltModel
    reference: FrozenReference
    head: ZeroShotHead
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    step_fn: RobustStep
    train_set: Any
    probe_images: torch.Tensor
    probe_labels: torch.Tensor
    unreadable: Optional[UnreadableLog]
    passes: str
    workers: int
    per_epoch: int
    total: int
    start: int
    #: seconds: the longest batch and checkpoint write, what a stop signal may have to wait for
    longest: dict = field(default_factory=lambda: {"batch": 0.0, "checkpoint": 0.0})
    #: seconds spent in the batches trained by this process (for the run's mean rate)
    trained_seconds: float = 0.0

    @property
    def output(self) -> Path:
        return Path(self.config.output)

    @property
    def checkpoint_path(self) -> Path:
        return self.output / LAST

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.info.world_size

    @property
    def encoder(self) -> torch.nn.Module:
        return self.built.encoder

    def checkpoint(self, step: int) -> None:
        """Writes last.pt atomically (rank 0): weights, optimisers (AdamW's moments unless
        --no-save-optimizer-state), schedule, dual state, RNG, at batch `step`."""
        if not self.info.is_main:
            return
        began = time.perf_counter()
        save_atomic({
            "format_version": FORMAT_VERSION, "fingerprint": self.fingerprint, "step": step,
            "epoch": step // self.per_epoch, "encoder": self.encoder.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.config.save_optimizer_state else None,
            "scheduler": self.scheduler.state_dict(),
            "dual": self.step_fn.state_dict(), "rng": {"torch": torch.get_rng_state()}, "config": self.config.to_dict(),
        }, self.checkpoint_path)
        self.longest["checkpoint"] = max(self.longest["checkpoint"], time.perf_counter() - began)

    def probe(self) -> dict:
        """Held-out clean/robust accuracy and constraint use (rank 0's `probe`), at the training precision."""
        config = self.config
        # "within margin" uses the method's own embedding margin (LORE, TeCoA+l2); others: rho ||phi_0(x)||^2
        own = method_entry(config.method).own_margin
        margin = self.step_fn.method.constraint.margin if own else NormMargin(config.rho)
        return probe(self.encoder, self.reference, self.head, self.probe_images, self.probe_labels, eps=config.eps,
                     margin=margin, multiplier=self.step_fn.multiplier, seed=config.seed, batch_size=config.batch_size,
                     autocast_dtype=torch.bfloat16 if config.precision == "bf16" else None)


def _prepare_output(config: TrainConfig, resume: bool, info: DistInfo, fingerprint: dict) -> Optional[dict]:
    """Checks the output folder (refusing to mix runs) and loads the checkpoint to resume; writes config.json."""
    output = Path(config.output)
    checkpoint_path = output / LAST
    state = None
    for name in RUN_WRITES:  # a link planted where the run will write is refused now, not after training
        refuse_symlink(output / name)
    if resume:
        state = load_checkpoint(checkpoint_path, fingerprint)  # refuses any change it could not honour
    elif info.is_main and checkpoint_path.exists():
        raise FileExistsError(f"{checkpoint_path} exists: pass --resume to continue it, or choose another --output")
    elif info.is_main and (earlier := earlier_run_files(output)):
        raise FileExistsError(f"{output} holds an earlier run's {', '.join(earlier)} and no checkpoint to resume from; "
                              "a new run would mix with them: choose another --output, or delete them first")
    if info.is_main:
        output.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(checkpoint_path)
        write_json(output / "config.json", config.to_dict())
    return state


def _build(config: TrainConfig, resume: bool, info: DistInfo) -> _Run:
    """The model, phi_0, data, probe set, head, optimisers and the step of a run, restored from its checkpoint on
    `resume`."""
    check_data_spec(config.data, "--data")  # before any model is built or any file written
    if config.probe_data is not None:
        check_data_spec(config.probe_data, "--probe-data")
    device = _device(config, info)
    fingerprint = config.resume_fingerprint(info.world_size)
    state = _prepare_output(config, resume, info, fingerprint)
    output = Path(config.output)
    unreadable = (UnreadableLog(output / UNREADABLE_LIST if info.is_main else None, resume=resume)
                  if config.skip_unreadable else None)
    torch.manual_seed(config.seed)
    built = build_model(config.model, config.pretrained, config.image_size, cache_dir=Path(config.cache_dir).expanduser(),
                        seed=config.split_seed, device=device, allow_missing=config.allow_missing)
    check_exportable(built, config.model)  # before any training: a run must end with its export
    encoder = built.encoder
    _prepare_for_device(config, built, device, info)
    reference = FrozenReference(encoder)  # phi_0: the weights as built, before any checkpoint is loaded
    train_set, probe_source = _train_and_probe_sets(config, built.image_size, info)
    inputs = {"data": {"spec": config.data, **dataset_fingerprint(train_set)},
              "model": model_fingerprint(config.model, config.pretrained)}
    if state is not None:
        check_inputs(state, inputs, output / LAST)  # a resume on changed shards, folders or weights is refused
    fingerprint["inputs"] = inputs  # recorded in every checkpoint
    _note_samples_without_image(train_set, unreadable)
    shards = is_shard_spec(config.data)  # class ids without names: the head reads the probe data's classes
    if probe_source is None:  # shards, no probe: no head either (shard methods are unsupervised)
        probe_images, probe_labels = torch.empty(0, 3, built.image_size, built.image_size), torch.empty(0, dtype=torch.long)
        head_images, _ = probe_subset(train_set, 1000, config.seed + 1, on_unreadable=unreadable)
        head = None
    else:
        probe_images, probe_labels = probe_subset(probe_source, config.probe_size, config.seed, on_unreadable=unreadable)
        head_set = probe_source if shards else train_set
        head_images, head_labels = probe_subset(head_set, 1000, config.seed + 1, on_unreadable=unreadable)
        head = build_head(built, dataset_classnames(head_set), reference, head_images.to(device), head_labels.to(device))
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    per_epoch = batches_per_epoch(len(train_set), config.batch_size * info.world_size)
    total = config.max_steps or per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, config.warmup_steps))
    if config.precision == "bf16" and info.is_main and (message := bf16_warning(device)) is not None:
        warnings.warn(message, stacklevel=3)
    passes = resolve_passes(config.passes, device)  # what 'auto' became
    step_fn = _robust_step(config, info, built, reference, head, optimizer, passes, device)
    if shards and step_fn.method.supervised:
        raise ValueError(f"method {config.method!r} is supervised, and shards carry class ids without names for its "
                         "zero-shot head; train it on an image folder or a torchvision dataset")
    step_fn.fit_dual_features(head_images.to(device), batch_size=config.batch_size)  # same images on every rank
    start = 0
    if state is not None:
        encoder.load_state_dict(state["encoder"])
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        elif info.is_main:
            warnings.warn(f"{output / LAST} holds no AdamW moments (written with --no-save-optimizer-state): they "
                          f"restart from zero at batch {state['step']}, so this run no longer continues the "
                          "uninterrupted one exactly", stacklevel=3)
        scheduler.load_state_dict(state["scheduler"])
        step_fn.load_state_dict(state["dual"])
        torch.set_rng_state(state["rng"]["torch"])
        start = int(state["step"])
        if info.is_main:
            _drop_metrics_after(output / "metrics.jsonl", start)
    workers = 0 if isinstance(train_set, TensorImages) else resolve_workers(config.workers)  # in-memory data: none
    if info.is_main:
        use = predict_disk_use(built.encoder, exported_weights(built), step_fn.state_dict(),
                               save_optimizer_state=config.save_optimizer_state)
        print(use.describe(), flush=True)
    return _Run(config, info, device, fingerprint, built, reference, head, optimizer, scheduler, step_fn, train_set,
                probe_images, probe_labels, unreadable, passes, workers, per_epoch, total, start)


def _prepare_for_device(config: TrainConfig, built: BuiltModel, device: torch.device, info: DistInfo) -> None:
    """Before phi_0's snapshot and DDP: the memory format, TF32, and the parameters no image reaches frozen."""
    if config.channels_last:  # before phi_0's snapshot, so the reference runs in the same layout
        built.encoder.to(memory_format=torch.channels_last)
    if device.type == "cuda":  # fp32 matmuls (phi_0 outside autocast's ops, the dual, fp32 runs) on tensor cores
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32
    frozen = freeze_unreachable(built.encoder, built.image_size, device)
    if frozen and info.is_main:
        print(f"frozen: {len(frozen)} parameter(s) the image embedding never uses ({', '.join(frozen[:4])}"
              f"{', ...' if len(frozen) > 4 else ''}): not trained, not synchronised", flush=True)


def _train_and_probe_sets(config: TrainConfig, image_size: int, info: DistInfo) -> tuple[Any, Any]:
    """(training data, probe data). The probe is held out: `--probe-data`, the test split of a dataset that has
    one, or for an image folder `PROBE_SHARE` of it (at most probe_size images), which training then excludes;
    rank 0 lists that folder's probe files in probe_images.txt."""
    classes = read_class_list(config.classes) if config.classes else None
    data = build_dataset(config.data, image_size, split="train", seed=config.split_seed, classes=classes)
    if config.probe_data is not None:
        probe = build_dataset(config.probe_data, image_size, split="train", seed=config.split_seed,
                              classes=classes if Path(config.probe_data).is_dir() else None)
        check_same_classes(data, probe, f"training data {config.data}", f"probe data {config.probe_data}")
        return data, probe
    if is_shard_spec(config.data):
        if config.probe_every == 0:  # no probe runs, and shard methods need no head
            return data, None
        raise ValueError(f"--data {config.data}: shards have no held-out split; pass --probe-data (an image folder or "
                         "torchvision:NAME:ROOT with class names, which the probe's zero-shot head reads), or "
                         "--probe-every 0 for no probe")
    if not is_image_folder(config.data):
        return data, build_dataset(config.data, image_size, split=config.probe_split, seed=config.split_seed,
                                   classes=classes)
    if len(data) < 4:
        raise ValueError(f"--data {config.data} holds {len(data)} images: too few to hold a probe out of it (pass "
                         "--probe-data, or --probe-every 0 for no probe)")
    probe, train = split_disjoint(data, min(PROBE_SHARE, config.probe_size / len(data)), config.split_seed)
    if info.is_main:
        write_text_atomic(Path(config.output) / PROBE_FILES, "".join(f"{probe.source(i)}\n" for i in range(len(probe))))
    return train, probe


def _note_samples_without_image(train_set: Any, unreadable: Optional[UnreadableLog]) -> None:
    """Shard samples without an image member are listed with the unreadable images (or, with
    --no-skip-unreadable, stop the run naming the first)."""
    left_out = getattr(train_set, "without_image", [])
    if not left_out:
        return
    if unreadable is None:
        raise UnreadableImageError(f"{len(left_out)} shard sample(s) hold no image member ({', '.join(IMAGE_EXTENSIONS)}),"
                                   f" e.g. {left_out[0]}; --skip-unreadable leaves them out and lists them")
    unreadable.note_without_image(left_out)


def _robust_step(config: TrainConfig, info: DistInfo, built: BuiltModel, reference: FrozenReference, head: ZeroShotHead,
                 optimizer: torch.optim.Optimizer, passes: str, device: torch.device) -> RobustStep:
    """The per-batch step over the encoder as the config wraps it (checkpointing, channels-last, compile, DDP)."""
    encoder = built.encoder
    if config.grad_checkpointing:
        enable_grad_checkpointing(encoder, config.model)
    model = torch.compile(encoder) if config.compile else encoder
    if info.enabled:  # buffers are broadcast on every forward only where training changes some (BatchNorm)
        ddp = torch.nn.parallel.DistributedDataParallel
        sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
        model = ddp(model, device_ids=[device.index] if device.type == "cuda" else None,
                    **{sync: has_running_statistics(encoder)})
    method = make_method(config)
    torch.manual_seed(config.seed)  # the dual network's init must not depend on how the model was built
    return RobustStep(
        model, method, optimizer, eps=config.eps, reference=reference, head=head,
        pgd_steps=config.pgd_steps, primal_steps=config.updates_per_batch, embed_dim=encoder.embed_dim,
        autocast_dtype=torch.bfloat16 if config.precision == "bf16" else None,
        accumulation_steps=config.grad_accumulation, passes=passes,
        checks="eager" if config.eager_checks else "deferred", profile=config.profile,
    )


def _loop(run: _Run) -> tuple[str, int]:
    """Trains from batch `run.start` to `run.total` (or a stop signal); returns (status, batches done)."""
    config, info = run.config, run.info
    writer = _tensorboard(run.output) if config.tensorboard and info.is_main else None
    metrics_file = open_append(run.output / "metrics.jsonl") if info.is_main else None
    bar = progress(run.total, f"{config.method} eps={format_eps(config.eps)}", initial=run.start, unit="batch",
                   enabled=info.is_main)
    batches = _batches(run)
    collapsed = 0  # consecutive batches with a collapsed multiplier (see _stop_flags), the same count on every rank
    try:
        with _StopRequest() as stop:
            if run.start == 0 and info.is_main and config.probe_every:
                _log(metrics_file, writer, 0, {"epoch": 0, **run.probe()})
            for step in range(run.start, run.total):
                began = time.perf_counter()
                result, data_wait = _train_batch(run, step, batches)
                flags = _stop_flags(result, stop.signal is not None)
                if info.enabled:
                    torch.distributed.all_reduce(flags)  # SUM: > 0 where some rank saw it
                seen = dict(zip(STOP_FLAGS, result.fused_read(flags, check=False)))  # the batch's one host read
                seconds = time.perf_counter() - began  # the read waited for the device: the batch's real time
                run.longest["batch"] = max(run.longest["batch"], seconds)
                collapsed = collapsed + 1 if seen["collapsed"] > 0 else 0
                _stop_if_broken(run, step, seen, collapsed)
                done = step + 1
                _report_batch(run, done, result, seconds, data_wait, bar, metrics_file, writer)
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
        if metrics_file:
            metrics_file.close()
        if writer:
            writer.close()


def _batches(run: _Run):
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


def _stop_if_broken(run: _Run, step: int, seen: dict, collapsed: int) -> None:
    """Raises the same one-line error on every rank when some rank's batch `step` met a non-finite value or
    pixels out of range, or the multiplier has been collapsed for `COLLAPSE_PATIENCE` batches (`seen`: the
    `STOP_FLAGS` summed over the ranks)."""
    config, world = run.config, run.info.world_size
    where = f"training stopped at batch {step}"
    if seen["pixels"] > 0:
        raise ValueError(f"{where}: a batch held pixels outside [0, 1] on {seen['pixels']:.0f} of {world} rank(s)")
    if seen["non-finite"] > 0:
        raise FloatingPointError(
            f"{where}: {config.method} met a non-finite loss or gradient on {seen['non-finite']:.0f} of {world} "
            "rank(s); the weights in memory may hold it, so nothing after the last checkpoint is kept. "
            + _restart_advice(run.checkpoint_path))
    if collapsed >= COLLAPSE_PATIENCE:
        raise FloatingPointError(
            f"{where}: the multiplier collapsed — lambda <= {COLLAPSED_LAMBDA:g} on every sample for {collapsed} "
            f"batches while {seen['violating_share'] / world:.0%} of the batch violates its margin (a softplus pushed "
            f"this far down no longer moves: usually --dual-lr {config.dual_lr:g} is too large). "
            + _restart_advice(run.checkpoint_path))


def _train_batch(run: _Run, step: int, batches) -> tuple[StepResult, float]:
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
                                 + _restart_advice(run.checkpoint_path)) from error
    run.scheduler.step()
    return result, data_wait


def _zero_margin(method) -> bool:
    """Whether the method's constraint has a margin of 0 (naive's penalty): no sample can lie strictly inside."""
    margin = getattr(method.constraint, "margin", None)
    return isinstance(margin, FixedMargin) and margin.value == 0


def _report_batch(run: _Run, done: int, result: StepResult, seconds: float, data_wait: float, bar, metrics_file,
                  writer) -> None:
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
        _log(metrics_file, writer, done, record)


def _finish(run: _Run, status: str, step: int) -> RunResult:
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


def _drop_metrics_after(path: Path, step: int) -> None:
    """Keeps only the records of batches up to `step` (the checkpoint a resume continues from): the batches
    after it are trained again and logged again, so their old records would appear twice."""
    if not (path.exists() or path.is_symlink()):
        return
    kept = []
    for line in read_own_text(path).splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line torn by the interruption
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def _log(handle, writer, step: int, record: dict) -> None:
    record = {"step": step, **record}
    handle.write(dumps(record) + "\n")
    handle.flush()
    if writer is not None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                writer.add_scalar(key, value, step)


def _tensorboard(output: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from error
    return SummaryWriter(str(output / "tensorboard"))


__all__ = ["RunResult", "train", "make_method", "cosine_with_warmup", "CheckpointError", "resolve_device"]


#: what a finished or interrupted run leaves in its folder besides the checkpoint
RUN_FILES = ("metrics.jsonl", "summary.json", "export")
#: every path a run writes in its folder (`lore.files` refuses a symbolic link at any of them)
RUN_WRITES = ("config.json", LAST, *RUN_FILES, UNREADABLE_LIST, PROBE_FILES, "training_curves.png")


def earlier_run_files(output: Path) -> list[str]:
    """The files of an earlier run in `output` (see `RUN_FILES`) that a new run there would mix with."""
    return [name for name in RUN_FILES if (output / name).exists()]
