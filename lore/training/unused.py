"""Which `TrainConfig` settings take no part in a run: those its method does not read, and those its dual
optimizer, signal, parameterisation, relaxation, model or probe schedule ignores (torch-free)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ..registry import method_entry, method_takes


def unused_reason(settings: Mapping[str, Any], name: str) -> Optional[str]:
    """Why setting `name` takes no part in a run with these resolved `settings` (TrainConfig field -> value): the
    method does not read it, or the chosen dual optimizer, signal or parameterisation ignores it. None when it
    takes part. `TrainConfig` refuses an unused field set to anything but its default; `lore train` refuses
    any such flag given, even at its default."""
    method, dual = settings["method"], settings["dual"]
    if not method_takes(method, name):
        return f"method {method} does not read it"
    if name in ("dual_beta1", "dual_beta2") and settings["dual_optimizer"] != "adam":
        return f"the dual optimizer is {settings['dual_optimizer']}; the betas are Adam's (--dual-optimizer adam)"
    if name == "violation_rate" and settings["dual_signal"] != "rate":
        return f"the dual signal is {settings['dual_signal']}; violation_rate belongs to --dual-signal rate"
    if name == "dual_hidden" and dual != "network":
        return f"the dual is {dual}; only the network has a hidden layer"
    if name in ("dual_features", "dual_link") and dual == "scalar":
        return "the dual is scalar: one lambda, which reads no features and has no link"
    authors = method_entry(method).authors_updates
    if name == "baseline_updates" and authors is None:
        return f"method {method} takes K updates per batch (--primal-steps); only FARE and TeCoA have their own count"
    if name == "primal_steps" and authors is not None and settings["baseline_updates"] == "authors":
        return (f"method {method} takes its authors' {authors} update per adversarial batch; --baseline-updates "
                "equal gives it K")
    if name == "relax_price" and settings["relax"] == "none":
        return "relax is none: the margin is hard (--relax quadratic or linear prices a relaxation)"
    if name == "allow_missing" and not str(settings["model"]).startswith("hf:"):
        return "it applies to hf: models only"
    if name == "probe_size" and settings["probe_every"] == 0:
        return "probe_every is 0: no probe runs"
    return None
