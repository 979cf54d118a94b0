"""The typed configuration of a training run (`lore train`), with the paper's defaults.

Library code takes a `TrainConfig`; only the CLI turns flags or a JSON file into one.
"""

from __future__ import annotations

import math
from dataclasses import InitVar, asdict, dataclass, field, fields
from pathlib import Path
from typing import Collection, Optional, Union

from ..data.specs import PROBE_SHARE, is_image_folder
from ..devices import check_device
from ..presets import DEFAULT_PRESET, DUAL_PRESETS, PRESET_FIELDS, DualSettings, resolve_dual
from ..registry import BUILTIN_METHODS, method_entry
from ..units import parse_eps
from ..validation import check_field_types, check_seed_and_size, read_json_object
from .attacks import DEFAULT_TRAINING_ATTACK, training_attack_names
from .unused import unused_reason
from ..vocabulary import (BaselineUpdates, DualFeatures, DualKind, DualLink, DualOptimizer, DualSignal, PassSetting,
                          Precision, ProbeSplit, Relaxation, choices)


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


def _preset_help(name: str) -> str:
    """'default: paper V, embedded W' for a field a dual preset sets."""
    return "default: " + ", ".join(f"{p.name} {getattr(p, name)!r}" for p in DUAL_PRESETS.values())


@dataclass
class TrainConfig:
    """Everything a run needs.

    Defaults: the paper's (App. C, Table 6: AdamW lr 1e-5, wd 1e-4, cosine, PGD-10 with step eps/4, rho 0.1)
    and its dual (`dual_preset="paper"`: Algorithm 1's ascent on the violations, raw phi_0(x), softplus, SGD at
    5e-4, hidden 512, K = 5). The dual fields left None take the values of `dual_preset`
    (`lore.presets`); a value given explicitly overrides the preset's. After construction every field holds its
    resolved value, so config.json records what ran. The model and data defaults are the embedded digits
    model, which runs offline; its own dual preset is `embedded`, chosen explicitly.
    """

    # model
    model: str = _help("'digits-cnn' or 'digits-clip' (embedded, offline), an open_clip name (ViT-B-32), "
                       "'local-dir:PATH' (an open_clip folder), 'timm:NAME', or 'hf:PATH' (a local transformers "
                       "folder: CLIP, SigLIP, DINOv2; docs/training.md lists its files)", default="digits-cnn")
    pretrained: Optional[str] = _help("open_clip tag (openai, laion2b_s34b_b79k) or a local weights file; timm: a local "
                                      "weights file", default=None)
    image_size: Optional[int] = _help("input resolution (default: the model's own; digits: 16)", default=None)
    allow_missing: bool = _help("hf: models: train even when the folder's weights lack entries its config names "
                                "(they start at random and are listed in a warning); default: refuse such a folder",
                                default=False)
    # data
    data: str = _help("'digits', an ImageFolder directory, 'torchvision:NAME:ROOT' (dataset already on disk), or "
                      "'wds:PATTERN' (local webdataset tar shards, e.g. wds:shards/{0000..0099}.tar; needs --probe-data)",
                      default="digits")
    probe_data: Optional[str] = _help("held-out data for the probe (default: a held-out split of --data: its test "
                                      "split, or for an image folder a fifth of it, at most --probe-size images, that "
                                      "training then excludes)", default=None)
    probe_size: int = _help("images in the held-out probe set", default=256)
    probe_split: ProbeSplit = _help("which held-out part of --data the probe reads when --data has one (digits: 'test', "
                             "or 'validation' when choosing settings; torchvision: 'test')", default="test")
    classes: Optional[str] = _help("train (and probe) on these class folders of an image-folder --data only: "
                                   "'imagenet100' (the standard ImageNet-100 list of CMC, Tian et al. 2019, shipped "
                                   "with lore) or a text file with one folder name per line", default=None)
    workers: int = _help("data-loading processes decoding images of folder/torchvision data into uint8 batches "
                         "(0: decode in the training process; -1: min(8, CPU cores))", default=-1)
    prefetch_mib: int = _help("host memory, in MiB per process, for the uint8 batches the workers prepare ahead (at "
                              "least one batch per worker; ImageNet at 224 px, batch 448: 64 MiB a batch)",
                              default=2048)
    skip_unreadable: bool = _help("replace an undecodable image by the next decodable one, naming it in "
                                  "OUTPUT/unreadable_images.txt (--no-skip-unreadable: stop at the first, naming it)", default=True)
    # method
    method: str = _help(f"one of {', '.join(BUILTIN_METHODS)}, or one a plugin registered", default="lore")
    eps: float = _help("l_inf training radius as a fraction of the pixel range; the CLI accepts 4/255", default=4 / 255)
    attack: str = _help("the training attack, once per batch: pgd (the paper's), or one a plugin registered "
                        "(lore.training.attacks)", default=DEFAULT_TRAINING_ATTACK)
    pgd_steps: int = _help("the attack's iterations (PGD: step size eps/4)", default=10)
    rho: float = _help("margin scale rho (LORE, TeCoA+l2, TeCoA+KL)", default=0.1)
    adaptive_margin: bool = _help("LORE's margin rho ||phi_0(x)||^2 (paper); --no-adaptive-margin: the fixed "
                                  "tolerance rho in squared-l2 units (paper Table 13)", default=True)
    dual_preset: str = _help(f"LORE's dual settings: {', '.join(DUAL_PRESETS)} (paper: Algorithm 1 and App. C; "
                             "embedded: measured on the digits model; the dual flags below override single values; "
                             "docs/lore.md)", default=DEFAULT_PRESET)
    baseline_updates: BaselineUpdates = _help("FARE and TeCoA: 'authors' takes their authors' one encoder update per adversarial "
                                  "batch (RobustVLM's FARE, TeCoA); 'equal' takes K (--primal-steps) like the "
                                  "constrained methods: the equal-updates control", default="authors")
    primal_steps: Optional[int] = _help(f"K: primal updates per batch and per dual update ({_preset_help('primal_steps')})",
                                        default=None)
    dual: DualKind = _help(f"dual parameterisation: {', '.join(choices(DualKind))}", default="network")
    dual_hidden: Optional[int] = _help(f"hidden width of the dual network ({_preset_help('dual_hidden')})", default=None)
    dual_lr: Optional[float] = _help(f"dual learning rate eta ({_preset_help('dual_lr')})", default=None)
    dual_init: Optional[float] = _help("initial lambda(x) of every sample, > 0 with --dual-link softplus "
                                       f"({_preset_help('dual_init')})", default=None)
    relax: Relaxation = _help("LORE, TeCoA+l2/KL: a resilient margin (constrained.relaxation): each sample's bound may relax "
                       "by u(x) >= 0 at a price: 'quadratic' h(u) = price u^2 / 2, so u(x) = lambda(x) / price; "
                       "'linear' h(u) = price u, lambda capped at the price; 'none' (default): the hard margin, the "
                       "paper's", default="none")
    relax_price: float = _help("the relaxation's price: alpha of 'quadratic', beta of 'linear' (> 0; larger relaxes "
                               "less)", default=1.0)
    penalty: float = _help("LORE: c > 0 adds (c/2) relu(violation)^2 per sample (augmented Lagrangian); 0: the "
                           "paper's Lagrangian", default=0.0)
    dual_signal: Optional[DualSignal] = _help(f"LORE: what the dual step ascends on: {', '.join(choices(DualSignal))}. violation: the "
                                       "violations d - rho m(x) (Algorithm 1); rate: 1[outside the margin] - "
                                       "violation_rate, so lambda(x) rises where more than that share of samples "
                                       f"violate and falls to 0 where fewer do ({_preset_help('dual_signal')})",
                                       default=None)
    violation_rate: Optional[float] = _help("LORE, --dual-signal rate: tolerated share of samples outside the margin "
                                            f"({_preset_help('violation_rate')})", default=None)
    dual_features: Optional[DualFeatures] = _help(f"what the dual network sees of phi_0(x): {', '.join(choices(DualFeatures))} (raw: "
                                         "the paper's; standardized: each feature's mean and std over training "
                                         "images removed, so lambda(x) varies across samples; "
                                         f"{_preset_help('dual_features')})", default=None)
    dual_link: Optional[DualLink] = _help(f"dual network/linear output -> lambda: {', '.join(choices(DualLink))} (softplus: the "
                                     "paper's; projected: relu with projected-ascent gradients, no vanishing gradient "
                                     f"after a slack phase; {_preset_help('dual_link')})", default=None)
    dual_optimizer: Optional[DualOptimizer] = _help(f"dual ascent: {', '.join(choices(DualOptimizer))} (both maximise). sgd: Algorithm "
                                          "1's plain ascent, steps proportional to the violations; adam: steps of "
                                          f"about dual_lr whatever their scale ({_preset_help('dual_optimizer')})",
                                          default=None)
    dual_beta1: Optional[float] = _help(f"adam dual: beta1, the momentum of lambda's updates ({_preset_help('dual_beta1')})",
                                        default=None)
    dual_beta2: Optional[float] = _help("adam dual: beta2, the memory of the squared dual gradients "
                                        f"({_preset_help('dual_beta2')})", default=None)
    naive_weight: float = _help("fixed lambda of naive regularization", default=1.0)
    # optimisation
    lr: float = _help("AdamW learning rate", default=1e-5)
    weight_decay: float = _help("AdamW weight decay", default=1e-4)
    warmup_steps: int = _help("linear warm-up batches before the cosine decay", default=0)
    epochs: int = _help("passes over the training data", default=2)
    max_steps: Optional[int] = _help("stop after this many batches (overrides epochs)", default=None)
    batch_size: int = _help("images per process per batch", default=128)
    grad_accumulation: int = _help("split each batch into this many micro-batches (same update, less memory)", default=1)
    precision: Precision = _help("fp32 or bf16 (autocast)", default="fp32")
    passes: PassSetting = _help("constrained methods: 'fused' (one forward over [adversarial; clean]), 'sequential' (the "
                        "adversarial term back-propagated before the clean forward: FARE's activation memory, the "
                        "same update), or 'auto' (sequential on GPUs, where memory decides the batch; fused on CPU)",
                        default="auto")
    grad_checkpointing: bool = _help("recompute the tower's activations in the backward pass instead of storing "
                                     "them (open_clip and timm towers): less memory, about a third more compute",
                                     default=False)
    compile: bool = _help("torch.compile the encoder for training and for the attack's input-gradient passes "
                          "(first batches slower while it compiles)", default=False)
    channels_last: bool = _help("channels-last memory format for convolutional towers (ConvNeXt, ResNet)",
                                default=False)
    seed: int = _help("seed of data order, PGD starts and initialisations", default=0)
    split_seed: int = _help("seed of the digits train/held-out split, of the probe held out of an image folder, and "
                            "of the embedded reference models' pretraining; keep it fixed when repeating a run over "
                            "--seed values", default=0)
    # run
    output: str = _help("run folder: checkpoints, metrics, plots, export", default="runs/train")
    cache_dir: str = _help("where built reference models (the digits encoder) are cached", default="~/.cache/lore")
    checkpoint_every: int = _help("write a checkpoint every N batches", default=50)
    save_optimizer_state: bool = _help(
        "keep AdamW's two moments in last.pt, two thirds of its size (ViT-B/32: 1.06 GB with them, 0.35 GB without; "
        "docs/training.md); without them a --resume restarts the moments from zero and says so: it no longer "
        "continues the uninterrupted run exactly", default=True)
    log_every: int = _help("write a metrics line every N batches", default=1)
    probe_every: int = _help("measure clean/robust probe accuracy every N batches and after the last (0: never)", default=25)
    tensorboard: bool = _help("also log to TensorBoard (needs the tensorboard package)", default=False)
    device: str = _help("cpu, cuda, or cuda:N (default: cuda if available)", default="")
    tf32: bool = _help("on a GPU, run fp32 matmuls and convolutions on TF32 tensor cores (what bf16 autocast leaves in "
                       "fp32: the dual network, fp32 runs); --no-tf32: full fp32", default=True)
    profile: bool = _help("time the attack, primal and dual phases by waiting for the GPU at each boundary (adds "
                          "host-device synchronisations; without it they are timed by CUDA events, which add none)",
                          default=False)
    eager_checks: bool = _help("debugging: read each correctness check (non-finite loss or gradient, pixel range) "
                               "where it is made and stop before the update it guards; by default they are read "
                               "with the batch's numbers in one transfer per batch", default=False)
    #: the fields the command line was given (not a setting: `_check_unused` refuses them by flag when unused)
    given: InitVar[Collection[str]] = ()

    def __post_init__(self, given: Collection[str]) -> None:
        self.eps = parse_eps(self.eps)  # once: "4/255" or a number -> a float in [0, 1], before the type check
        check_field_types(self)
        check_seed_and_size(self, ("seed", "split_seed"))
        check_device(self.device)
        resolved = resolve_dual(self.dual_preset, {name: getattr(self, name) for name in PRESET_FIELDS})
        for name, value in resolved.items():  # the preset resolved once, into the fields config.json records
            setattr(self, name, value)
        check_field_types(self)  # the names (Literal fields) and types of the preset's values too
        method_entry(self.method)  # refuses a name the registry does not know
        if self.attack not in (names := training_attack_names()):
            raise ValueError(f"attack must be one of {names}, got {self.attack!r}")
        DualSettings.of(self)  # checks the dual's values
        self._check_numbers()
        self._check_data_split()
        self._check_unused(given)

    def _check_unused(self, given: Collection[str]) -> None:
        """Refuses a setting that takes no part in the run (`why_unused`): any in `given` (what the command line
        was given, named by its flag, even at its default), then any other set to anything but its default."""
        for name in (f.name for f in fields(self) if f.name in given):
            if (why := self.why_unused(name)) is not None:
                raise ValueError(f"--{name.replace('_', '-')} does not apply: {why}; leave it out")
        preset = DUAL_PRESETS[self.dual_preset].values()
        for f in fields(self):
            default = preset[f.name] if f.name in preset else f.default
            why = self.why_unused(f.name)
            if why is not None and getattr(self, f.name) != default:
                raise ValueError(f"{f.name}={getattr(self, f.name)!r} does not apply: {why}; leave it out")

    def _check_numbers(self) -> None:
        """Counts >= 1, finite non-negative rates and weights, shares in [0, 1), a price > 0, and the batch split."""
        if not (isinstance(self.violation_rate, (int, float)) and 0 <= self.violation_rate < 1):
            raise ValueError(f"violation_rate must be a share in [0, 1), got {self.violation_rate!r}")
        if not (isinstance(self.relax_price, (int, float)) and not isinstance(self.relax_price, bool)
                and math.isfinite(self.relax_price) and self.relax_price > 0):
            raise ValueError(f"relax_price must be a finite number > 0, got {self.relax_price!r}")
        if self.workers < -1:
            raise ValueError(f"workers must be >= 0, or -1 for automatic, got {self.workers}")
        for name in ("pgd_steps", "primal_steps", "epochs", "batch_size", "checkpoint_every", "log_every",
                     "probe_size", "grad_accumulation", "prefetch_mib"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("rho", "lr", "weight_decay", "naive_weight", "penalty"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if self.batch_size % self.grad_accumulation:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by grad_accumulation {self.grad_accumulation}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        for name in ("warmup_steps", "probe_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def _check_data_split(self) -> None:
        if self.probe_split != "test" and self.data != "digits":
            raise ValueError(f"probe_split {self.probe_split!r}: only the digits have a validation part "
                             f"(data {self.data!r})")

    @property
    def dual_settings(self) -> DualSettings:
        """The dual as one checked, frozen object (`lore.presets.DualSettings`), what LORE and the TeCoA variants
        take whole."""
        return DualSettings.of(self)

    @property
    def updates_per_batch(self) -> int:
        """Encoder updates per adversarial batch: the method's authors' count (FARE, TeCoA: 1) unless
        `baseline_updates` is "equal", else K (`primal_steps`)."""
        authors = method_entry(self.method).authors_updates
        return authors if authors is not None and self.baseline_updates == "authors" else self.primal_steps

    def why_unused(self, name: str) -> Optional[str]:
        """Why field `name` takes no part in this run, or None when it does (`unused_reason`)."""
        return unused_reason({f.name: getattr(self, f.name) for f in fields(self)}, name)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, given: Collection[str] = ()) -> "TrainConfig":
        """The config of `values` (field -> value); `given`: the fields the command line was given (see
        `_check_unused`)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**values, given=given)

    @classmethod
    def from_json(cls, path: Union[str, Path]) -> "TrainConfig":
        return cls.from_dict(read_json_object(path))

    def resume_fingerprint(self, world_size: int = 1) -> dict:
        """Settings a checkpoint must share with the run that resumes it.

        Everything that decides the trained weights is in it: the model, data, method, optimiser, schedule
        (lr, epochs, max_steps), batch and world size, seed, probe set. Only `OPERATIONAL_FIELDS` (where
        files go, how often to log, which device) may change on resume.
        """
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in OPERATIONAL_FIELDS}
        values["world_size"] = world_size
        if self.probe_data is None and is_image_folder(self.data):
            # the probe is held out of the folder, and training excludes it (checkpoints from before that change
            # trained on the probe's images too: refused)
            values["probe_held_out"] = f"{PROBE_SHARE:g} of data, at most probe_size images"
        return values


OPERATIONAL_FIELDS = frozenset({"output", "cache_dir", "checkpoint_every", "log_every", "probe_every", "tensorboard",
                                "device", "workers", "passes", "grad_checkpointing", "compile", "channels_last",
                                "save_optimizer_state", "prefetch_mib", "tf32", "profile", "eager_checks"})
"""`TrainConfig` fields that do not change what a run computes, so a resume may change them."""
