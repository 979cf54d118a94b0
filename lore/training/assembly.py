"""What a `TrainConfig` becomes before its first batch: the `Run` (model, phi_0, data, head, optimisers, step),
restored from its checkpoint on a resume. The engine's loop trains a `Run`; nothing here trains."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from constrained import NormMargin

from ..data.images import TensorImages, batches_per_epoch, check_data_spec
from ..data.specs import is_shard_spec
from ..data.unreadable import UNREADABLE_LIST, UnreadableLog
from ..devices import bf16_warning
from ..heads import ZeroShotHead
from ..methods import build_method
from ..models.build import BuiltModel, build_model
from ..models.export import check_exportable, exported_weights
from ..provenance import dataset_fingerprint, model_fingerprint
from ..reference import FrozenReference
from ..registry import method_entry
from ..step import RobustStep
from .attacks import training_attack
from .checkpoint import FORMAT_VERSION, check_inputs, save_atomic
from .config import TrainConfig
from .disk import predict as predict_disk_use
from .distributed import DistInfo
from .placement import (enable_grad_checkpointing, prepare_for_device, resolve_passes, resolve_workers,
                        training_device, wrap_for_training)
from .probe import probe
from .run_data import note_samples_without_image, probe_and_head, train_and_probe_sets
from .run_folder import LAST, drop_metrics_after, prepare_output


def cosine_with_warmup(total: int, warmup: int):
    """LR multiplier per batch: linear warm-up, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return factor


@dataclass
class Run:
    """What `build_run` made of a config: the engine's loop trains it, then exports and summarises it."""

    config: TrainConfig
    info: DistInfo
    device: torch.device
    fingerprint: dict
    built: BuiltModel
    reference: FrozenReference
    head: Optional[ZeroShotHead]
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
        constraint = self.step_fn.method.constraint
        margin = constraint.margin if own else NormMargin(config.rho)
        relax = constraint.relax if own else None  # u(x) needs the constraint's own violation: its own margin
        return probe(self.encoder, self.reference, self.head, self.probe_images, self.probe_labels, eps=config.eps,
                     margin=margin, multiplier=self.step_fn.multiplier, relax=relax, seed=config.seed,
                     batch_size=config.batch_size, autocast_dtype=torch.bfloat16 if config.precision == "bf16" else None)


def robust_step(config: TrainConfig, info: DistInfo, built: BuiltModel, reference: FrozenReference,
                head: Optional[ZeroShotHead], optimizer: torch.optim.Optimizer, passes: str,
                device: torch.device) -> RobustStep:
    """The per-batch step over the encoder as the config wraps it (checkpointing, channels-last, compile, DDP)."""
    if config.grad_checkpointing:
        enable_grad_checkpointing(built.encoder, config.model)
    model = wrap_for_training(built.encoder, device, info, compile=config.compile)
    method = build_method(config.method, config)  # the registry says which config fields it reads
    torch.manual_seed(config.seed)  # the dual network's init must not depend on how the model was built
    return RobustStep(
        model, method, optimizer, eps=config.eps, reference=reference, head=head,
        attack=training_attack(config.attack), pgd_steps=config.pgd_steps, primal_steps=config.updates_per_batch,
        embed_dim=built.encoder.embed_dim,
        autocast_dtype=torch.bfloat16 if config.precision == "bf16" else None,
        accumulation_steps=config.grad_accumulation, passes=passes,
        checks="eager" if config.eager_checks else "deferred", profile=config.profile,
    )


def build_run(config: TrainConfig, resume: bool, info: DistInfo) -> Run:
    """The model, phi_0, data, probe set, head, optimisers and the step of a run, restored from its checkpoint on
    `resume`. Data specs are checked before any model is built or any file written."""
    check_data_spec(config.data, "--data")
    if config.probe_data is not None:
        check_data_spec(config.probe_data, "--probe-data")
    device = training_device(config.device, info)
    fingerprint = config.resume_fingerprint(info.world_size)
    output = Path(config.output)
    state = prepare_output(output, config.to_dict(), resume=resume, is_main=info.is_main, fingerprint=fingerprint)
    unreadable = (UnreadableLog(output / UNREADABLE_LIST if info.is_main else None, resume=resume)
                  if config.skip_unreadable else None)
    torch.manual_seed(config.seed)
    built = build_model(config.model, config.pretrained, config.image_size, cache_dir=Path(config.cache_dir).expanduser(),
                        seed=config.split_seed, device=device, allow_missing=config.allow_missing)
    check_exportable(built, config.model)  # before any training: a run must end with its export
    prepare_for_device(built, device, info, channels_last=config.channels_last, tf32=config.tf32)
    reference = FrozenReference(built.encoder)  # phi_0: the weights as built, before any checkpoint is loaded
    train_set, probe_source = train_and_probe_sets(config, built.image_size, info)
    inputs = {"data": {"spec": config.data, **dataset_fingerprint(train_set)},
              "model": model_fingerprint(config.model, config.pretrained)}
    if state is not None:
        check_inputs(state, inputs, output / LAST)  # a resume on changed shards, folders or weights is refused
    fingerprint["inputs"] = inputs  # recorded in every checkpoint
    note_samples_without_image(train_set, unreadable)
    probe_images, probe_labels, head, head_images = probe_and_head(config, built, reference, train_set, probe_source,
                                                                   unreadable, device)
    run = _optimise(config, info, device, fingerprint, built, reference, head, train_set, probe_images, probe_labels,
                    unreadable)
    run.step_fn.fit_dual_features(head_images.to(device), batch_size=config.batch_size)  # same images on every rank
    if state is not None:
        _restore(run, state)
    if info.is_main:
        use = predict_disk_use(built.encoder, exported_weights(built), run.step_fn.state_dict(),
                               save_optimizer_state=config.save_optimizer_state)
        print(use.describe(), flush=True)
    return run


def _optimise(config: TrainConfig, info: DistInfo, device: torch.device, fingerprint: dict, built: BuiltModel,
              reference: FrozenReference, head: Optional[ZeroShotHead], train_set: Any, probe_images: torch.Tensor,
              probe_labels: torch.Tensor, unreadable: Optional[UnreadableLog]) -> Run:
    """The run's AdamW, its LR schedule over the run's batches, and its step; a run from batch 0."""
    optimizer = torch.optim.AdamW([p for p in built.encoder.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    per_epoch = batches_per_epoch(len(train_set), config.batch_size * info.world_size)
    total = config.max_steps or per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, config.warmup_steps))
    if config.precision == "bf16" and info.is_main and (message := bf16_warning(device)) is not None:
        warnings.warn(message, stacklevel=4)
    passes = resolve_passes(config.passes, device)  # what 'auto' became
    step_fn = robust_step(config, info, built, reference, head, optimizer, passes, device)
    if is_shard_spec(config.data) and step_fn.method.supervised:
        raise ValueError(f"method {config.method!r} is supervised, and shards carry class ids without names for its "
                         "zero-shot head; train it on an image folder or a torchvision dataset")
    workers = 0 if isinstance(train_set, TensorImages) else resolve_workers(config.workers)  # in-memory data: none
    return Run(config, info, device, fingerprint, built, reference, head, optimizer, scheduler, step_fn, train_set,
               probe_images, probe_labels, unreadable, passes, workers, per_epoch, total, start=0)


def _restore(run: Run, state: dict) -> None:
    """Loads a checkpoint's weights, AdamW moments, schedule, dual state and RNG into `run`, which continues from
    the checkpoint's batch; rank 0 drops the metrics logged after it."""
    run.encoder.load_state_dict(state["encoder"])
    if state["optimizer"] is not None:
        run.optimizer.load_state_dict(state["optimizer"])
    elif run.info.is_main:
        warnings.warn(f"{run.checkpoint_path} holds no AdamW moments (written with --no-save-optimizer-state): they "
                      f"restart from zero at batch {state['step']}, so this run no longer continues the "
                      "uninterrupted one exactly", stacklevel=4)
    run.scheduler.load_state_dict(state["scheduler"])
    run.step_fn.load_state_dict(state["dual"])
    torch.set_rng_state(state["rng"]["torch"])
    run.start = int(state["step"])
    if run.info.is_main:
        drop_metrics_after(run.output / "metrics.jsonl", run.start)
