"""The shared state and settings of one `examples/lore_clip.py` invocation: what its flags resolve to, the
`lore train` configuration of each model, and the `Job` (phi_0, held-out images, zero-shot head, cached
evaluations, progress and expected duration)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from lore.data.images import build_dataset, dataset_classnames, probe_subset
from lore.evaluation.config import split_list
from lore.jsonio import write_json
from lore.models.build import build_model, class_embeddings
from lore.training.config import TrainConfig
from lore.training.plots import read_metrics
from lore.presets import PRESET_FIELDS, dual_preset, resolve_dual
from lore.registry import method_entry, method_names, method_takes
from lore.provenance import dataset_fingerprint, provenance, weights_sha256
from lore.units import format_eps, parse_eps

from .compare import load_trained, train_fresh, zero_shot_results

EMBEDDED = "digits-clip"
# Costs measured on the reference machine (2 CPU cores, quiet), embedded model, batch 64, PGD-10, K = 5; a job
# rescales them by this machine's speed on `speed_probe` (measured when the job starts), so the estimate
# printed first is measured here, not assumed (fitted on the default and --quick runs: docs/results.md):
SECONDS_PER_BATCH = {"fare": 0.22, "naive": 0.41, "lore": 0.44}  # one training step, without the probes
# FARE with its authors' 1 update per adversarial batch (above) costs 0.51 x LORE's step, with K = 5 updates (the
# equal-updates control) 0.71 x: medians of 20 steps, 2 interleaved repeats, on this project's machine, 2 threads
# (docs/log.md, 2026-12-06)
EQUAL_UPDATES_SECONDS_PER_BATCH = {"fare": 0.30, "tecoa": 0.30}
REFERENCE_BATCH = 64  # the batch size those steps were timed at; a step's cost grows in proportion to it
SECONDS_PER_PROBE_IMAGE = 0.0044  # held-out probe during training: PGD-10 on one image (5 probes per run)
SECONDS_PER_EVALUATION_IMAGE = 0.019  # zero-shot evaluation: 3 radii, 10 APGD iterations, 3 DLR-T targets
SECONDS_PER_RUN = 2.5  # fixed cost of one training run: building, checkpoints, export, plots
PROBE_SECONDS = 0.26  # `speed_probe` on the reference machine (median, quiet)


def _given(args, name: str, default):
    """args.<name> when the user gave it (0 included), else `default`."""
    value = getattr(args, name, None)
    return default if value is None else value


def settings_for(args) -> dict:
    embedded = args.model == EMBEDDED
    preset = getattr(args, "dual_preset", None) or ("embedded" if embedded else "paper")
    train_eps = args.train_eps or ("16/255,32/255,48/255" if embedded else "1/255,2/255,4/255")
    radii = sorted({parse_eps(e) for e in split_list(train_eps)})
    if args.quick and args.train_eps is None:
        radii = [radii[0], radii[-1]]
    return {
        "train_eps": radii,
        "eval_eps": [parse_eps(e) for e in split_list(args.eval_eps or ("8/255,16/255,32/255" if embedded else "1/255,2/255,4/255,8/255"))],
        "rho": args.rho if args.rho is not None else 0.1,
        "steps": args.steps or ((16 if args.quick else 90) if embedded else None),
        "batch_size": args.batch_size or (64 if embedded else 448),
        "lr": args.lr or (1e-3 if embedded else 1e-5),
        "warmup_steps": _given(args, "warmup_steps", 0),
        "dual_preset": preset,
        "penalty": _given(args, "penalty", 0.0),
        **resolve_dual(preset, {name: getattr(args, name, None) for name in PRESET_FIELDS}),
        "eval_samples": args.eval_samples or (100 if args.quick else (100_000 if embedded else 1000)),
        "apgd_iter": args.apgd_iter or (10 if embedded else 100),
        # APGD-DLR-T target classes: AutoAttack's 9 with real weights; 3 on the embedded model (its 10 classes'
        # 3 most likely wrong ones: the same robust accuracy to 0.7 points at 2.5x less time, docs/results.md)
        "apgd_targets": args.apgd_targets or (3 if embedded else 9),
        "probe_size": 128 if args.quick else 256,
        "train_data": args.train_data or ("digits" if embedded else None),
        "eval_data": args.eval_data or args.train_data or "digits",
        "methods": split_list(args.methods),
        # FARE and TeCoA: their authors' one update per adversarial batch, or K (the equal-updates control)
        "baseline_updates": getattr(args, "baseline_updates", None) or "authors",
        "eval_split": getattr(args, "eval_split", None) or "test",
    }


EQUAL_UPDATES_LABEL = "-k"
"""`--methods` label suffix: "fare-k" is FARE with K updates per adversarial batch (the equal-updates control),
trained beside "fare" (its authors' one update) by default."""


def run_method(label: str) -> tuple[str, Optional[str]]:
    """(registered method, forced baseline_updates) of a `--methods` label: "fare-k" -> ("fare", "equal"),
    "lore" -> ("lore", None)."""
    if label.endswith(EQUAL_UPDATES_LABEL):
        return label[: -len(EQUAL_UPDATES_LABEL)], "equal"
    return label, None


def check_method_labels(labels: list[str], baseline_updates: Optional[str]) -> Optional[str]:
    """Why `labels` (`--methods`) cannot run, or None: each is a registered method, or NAME-k for a method with
    its own authors' recipe (FARE, TeCoA); none twice; NAME-k beside NAME only with the authors' recipe."""
    for label in labels:
        method, forced = run_method(label)
        if method not in method_names():
            return f"--methods: unknown method {label!r}; known: {', '.join(method_names())}, and NAME-k (K updates)"
        if forced and method_entry(method).authors_updates is None:
            return (f"--methods {label}: {method} takes K updates per batch already; -k names the equal-updates "
                    "control of FARE and TeCoA")
        if forced and baseline_updates == "equal" and method in labels:
            return f"--methods {label} beside {method} with --baseline-updates equal trains the same model twice"
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    return f"--methods names {', '.join(repeated)} twice" if repeated else None


def train_config(args, s, label: str, folder: Path, *, eps: float, seed: int, **overrides) -> TrainConfig:
    """The `lore train` configuration of one model of this job (`label`: a method, or NAME-k: `run_method`)."""
    method, forced_updates = run_method(label)
    values = dict(
        model=args.model, pretrained=args.pretrained, data=s["train_data"],
        probe_data=None if s["train_data"] == "digits" else s["eval_data"], method=method, eps=eps,
        probe_split=s["eval_split"],
        rho=s["rho"], naive_weight=args.naive_weight, lr=s["lr"], warmup_steps=s["warmup_steps"],
        dual_preset=s["dual_preset"], penalty=s["penalty"], **{name: s[name] for name in PRESET_FIELDS},
        batch_size=s["batch_size"], epochs=args.epochs, max_steps=s["steps"], seed=seed, split_seed=args.split_seed,
        output=str(folder), checkpoint_every=max(10, (s["steps"] or 1000) // 4),
        probe_every=getattr(args, "probe_every", None) or max(1, -(-(s["steps"] or 1000) // 4)),
        probe_size=s["probe_size"], cache_dir=args.cache_dir, device=args.device,
    )
    values = {name: value for name, value in values.items() if method_takes(method, name)}  # fare takes no rho
    if method_entry(method).authors_updates is not None:  # FARE, TeCoA: K only as the equal-updates control
        values["baseline_updates"] = forced_updates or s["baseline_updates"]
        if values["baseline_updates"] == "authors":
            values.pop("primal_steps")
    values.update(overrides)
    return TrainConfig(**values)


class Job:
    """Everything the runs of one invocation share: phi_0, the held-out images, the zero-shot head, the timer."""

    def __init__(self, args, s) -> None:
        self.args, self.s = args, s
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if getattr(args, "retrain_reference", False):  # rebuild it now; the trainings then load this copy
            from lore.models.digits_clip import DEFAULT_STEPS, reference_file_name

            stale = Path(args.cache_dir).expanduser() / reference_file_name(16, args.split_seed, DEFAULT_STEPS)
            stale.unlink(missing_ok=True)
        source = "" if args.model != EMBEDDED else f", {args.pretrained or 'shipped'} weights"
        print(f"building the reference phi_0 ({args.model}{source}) ...", flush=True)
        built = build_model(args.model, args.pretrained, None, cache_dir=Path(args.cache_dir).expanduser(),
                            seed=args.split_seed, device=self.device)
        self.built = built
        self.reference = copy.deepcopy(built.encoder).eval()
        eval_set = build_dataset(s["eval_data"], built.image_size, split=s["eval_split"], seed=args.split_seed)
        images, labels = probe_subset(eval_set, s["eval_samples"], args.split_seed)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        classnames = dataset_classnames(eval_set)
        if built.clip is None or not classnames:
            raise ValueError("zero-shot evaluation needs a CLIP model and class names")
        self.class_embeddings = class_embeddings(built, classnames)
        self.eval_data = {"spec": s["eval_data"], "split": s["eval_split"], "split_seed": args.split_seed,
                          "eval_images": len(self.labels),
                          **dataset_fingerprint(eval_set)}
        self.speed = speed_probe(built.encoder, self.images) / PROBE_SECONDS if args.model == EMBEDDED else 1.0
        self.started = time.perf_counter()

    def expected(self, trainings: list[str]) -> str:
        """'; expected about N min here' for the embedded model (measured speed), '' otherwise.

        It also records the plan's costs, model by model, so that `progress` can correct the estimate by the time
        the finished models really took (a speed probe of a few seconds misreads a machine whose load changes).
        """
        if self.args.model != EMBEDDED:
            return ""
        self._plan = plan_seconds(self.s, trainings, len(self.labels))
        minutes = self.speed * sum(self._plan) / 60
        return (f"; expected about {minutes:.1f} min from now (this machine measured at {self.speed:.2f}x the "
                f"reference machine's time; re-measured after each model)")

    def dual_line(self) -> str:
        """One line saying which dual preset LORE's runs use, and any value overridden."""
        s = self.s
        preset = dual_preset(s["dual_preset"])
        changed = [f"{name} {s[name]:g}" if isinstance(s[name], float) else f"{name} {s[name]}"
                   for name in PRESET_FIELDS if s[name] != getattr(preset, name)]
        return (f"dual preset: {preset.name} ({preset.summary})" + (f"; overridden: {', '.join(changed)}" if changed else "")
                + "; docs/lore.md tables the presets")

    def dual_setting(self) -> dict:
        """The dual preset's name and every resolved dual value LORE's runs use (results files record it)."""
        return {"dual_preset": self.s["dual_preset"], **{name: self.s[name] for name in PRESET_FIELDS}}

    def provenance(self) -> dict:
        """What produced this job's results: code version, software, device, phi_0's weights, the evaluation data
        (each run's entry carries its own trained weights' SHA-256)."""
        return provenance(model=self.reference, device=str(self.device), data=self.eval_data)

    def evaluation_setting(self, seed: int, rho: float) -> dict:
        s = self.s
        return {"schema": 4, "eval_eps": [format_eps(e) for e in s["eval_eps"]], "apgd_iter": s["apgd_iter"],
                "apgd_targets": s["apgd_targets"],
                "eval_samples": len(self.labels), "rho": rho, "seed": seed}

    def measure(self, encoder, folder: Path, seed: int, rho: Optional[float] = None) -> dict:
        """Zero-shot results of `encoder`, cached in folder/evaluations.json, one entry per evaluation setting.

        A training folder is emptied whenever it is trained again, so a cached entry always describes the
        weights in that folder.
        """
        rho = self.s["rho"] if rho is None else rho  # the margin "within_margin" is measured against

        def compute() -> dict:
            result = zero_shot_results(encoder, self.reference, self.class_embeddings, self.images, self.labels,
                                       eps=self.s["eval_eps"], n_iter=self.s["apgd_iter"],
                                       n_targets=self.s["apgd_targets"], rho=rho, seed=seed,
                                       scale=self.built.logit_scale, bias=self.built.logit_bias)
            return result | {"weights_sha256": weights_sha256(encoder)}

        return cached_result(folder / "evaluations.json", self.evaluation_setting(seed, rho), compute)

    def train_and_measure(self, name: str, config: TrainConfig, *, resume: bool) -> dict:
        print(f"\n== {name}: training ({config.method}, eps {format_eps(config.eps)}, seed {config.seed}) ==", flush=True)
        folder = train_fresh(config, resume=resume)
        print(f"== {name}: evaluating ==", flush=True)
        # a LORE run is measured against its own margin; a fixed-tolerance one against the job's adaptive margin
        rho = config.rho if config.method == "lore" and config.adaptive_margin else None
        return self.measure(load_trained(self.reference, folder), folder, config.seed, rho)

    def progress(self, done: int, total: int) -> None:
        """'-- done/total models done in X min; about Y min left': Y scales what the plan has left by the time
        its finished part really took against its estimate (by models done when there is no plan)."""
        elapsed = time.perf_counter() - self.started
        plan = getattr(self, "_plan", None)
        if plan is not None and len(plan) == total + 1:  # the reference's evaluation, then one entry per model
            spent = sum(plan[:done + 1])
            left = sum(plan[done + 1:]) * elapsed / spent
            measured = f" (re-measured: the work so far took {elapsed / (self.speed * spent):.2f}x its first estimate)"
        else:
            left, measured = elapsed / done * (total - done), ""
        print(f"-- {done}/{total} models done in {elapsed / 60:.1f} min; about {left / 60:.1f} min left{measured}",
              flush=True)


def speed_probe(encoder: torch.nn.Module, images: torch.Tensor, repeats: int = 5) -> float:
    """Seconds for the work of about one training batch: 12 forward+backward passes of `encoder` on 64 images
    (PGD-10's input gradients and the primal passes), median of `repeats` after a warm-up."""
    import statistics

    encoder = copy.deepcopy(encoder).train()
    batch = images[:64].clone()

    def once() -> float:
        start = time.perf_counter()
        for _ in range(12):
            x = batch.clone().requires_grad_(True)
            encoder(x).pow(2).sum().backward()
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(repeats))


def plan_seconds(s: dict, trainings: list[str], samples: int) -> list[float]:
    """The embedded job's costs on the reference machine, in seconds: the reference's evaluation, then one entry
    per training (the training and the evaluation of its model on `samples` images). Times this machine's speed
    (`speed_probe` over `PROBE_SECONDS`), their sum is the first estimate."""
    steps = (s["steps"] or 0) * s.get("batch_size", REFERENCE_BATCH) / REFERENCE_BATCH  # in reference batches
    probes = 5 * s.get("probe_size", 256) * SECONDS_PER_PROBE_IMAGE  # the first probe and one per quarter (the last at the end)
    attack = len(s["eval_eps"]) / 3 * s["apgd_iter"] / 10 * (0.25 + 0.75 * s.get("apgd_targets", 3) / 3)
    evaluation = samples * SECONDS_PER_EVALUATION_IMAGE * attack
    def per_batch(label: str) -> float:
        method, forced = run_method(label)
        if (forced or s.get("baseline_updates")) == "equal" and method in EQUAL_UPDATES_SECONDS_PER_BATCH:
            return EQUAL_UPDATES_SECONDS_PER_BATCH[method]
        return SECONDS_PER_BATCH.get(method, 0.4)

    return [evaluation] + [per_batch(m) * steps + probes + SECONDS_PER_RUN + evaluation for m in trainings]


def run_entry(method: str, train_eps: float, seed: int, result: dict, folder: Optional[Path] = None) -> dict:
    """One element of results.json's "runs"; with the run's folder, also its last held-out probe of training
    (within_margin, relative distances, and for LORE lambda: mean, quantiles, near/inside the margin, rank correlation
    with each digit's use of its margin)."""
    entry = {"method": method, "train_eps": format_eps(train_eps), "seed": seed,
             "clean_accuracy": result["clean_accuracy"], "robust_accuracy": result["robust_accuracy"],
             "within_margin": result["within_margin"], "relative_deviation": result.get("relative_deviation"),
             "weights_sha256": result["weights_sha256"]}
    if folder is not None:
        probes = [r for r in read_metrics(folder) if "probe/within_margin" in r]
        if probes:
            entry["final_probe"] = {k.split("/", 1)[1]: v for k, v in probes[-1].items() if k.startswith("probe/")}
            entry["final_probe"]["step"] = probes[-1]["step"]
    return entry


def cached_result(cache: Path, setting: dict, compute: Callable[[], dict]) -> dict:
    """The result stored in the JSON list `cache` under exactly `setting`; otherwise `compute()`, appended to the
    list (written atomically) and returned."""
    entries = json.loads(cache.read_text()) if cache.is_file() else []
    for entry in entries:
        if entry["setting"] == setting:
            return entry["result"]
    result = compute()
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json(cache, entries + [{"setting": setting, "result": result}])
    return result


def run_folder(out: Path, method: str, eps: float, seed: int, tag: str = "") -> Path:
    return out / "runs" / f"{method}{tag}-eps{format_eps(eps).replace('/', 'of')}-seed{seed}"
