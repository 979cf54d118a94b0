"""The model card of an export: README.md with a YAML header, written from the run's own records.

Everything on it is read from files the run wrote — config.json (the settings), summary.json (batches trained,
provenance: code version, data fingerprint, weights SHA-256) and, once `lore eval` has scored the run folder,
that report — never typed by hand. What was not measured says so ("not evaluated").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Union

from ..jsonio import dumps, write_text_atomic
from ..registry import METHODS, method_entry, method_takes
from ..validation import read_json_object
from ..units import format_eps

CARD = "README.md"
REPORT_COPY = "evaluation.json"  # the report the card's numbers come from, kept beside it


#: config.json fields the card reads, with their types
CARD_FIELDS = {"model": str, "method": str, "eps": (int, float), "pgd_steps": int, "batch_size": int,
               "lr": (int, float), "data": str}


def check_card_sources(run_folder: Union[str, Path]) -> dict:
    """The run's config.json as the card reads it, checked (before an evaluation whose card it will feed).

    Raises:
        FileNotFoundError: no config.json. ValueError: a config.json that is not a JSON object, or lacks or
            mistypes a field the card reads (named).
    """
    path = Path(run_folder) / "config.json"
    config = read_json_object(path, "run config", holds="the run's settings")
    for name, kind in CARD_FIELDS.items():
        if not isinstance(config.get(name), kind) or isinstance(config.get(name), bool):
            raise ValueError(f"{path} is not the config.json `lore train` writes: its {name!r} is "
                             f"{config.get(name, 'missing')!r}")
    return config


def _yaml(value: Any) -> str:
    """A YAML scalar or flow list: JSON's quoting is valid YAML."""
    return json.dumps(value, ensure_ascii=False)


def _library(export: Path) -> str:
    if (export / "open_clip_config.json").is_file():
        return "open_clip"
    if (export / "config.json").is_file():
        return "transformers"
    return "lore"


def _base_model(config: dict) -> str:
    """The model a run started from: a Hugging Face cache snapshot (`models--ORG--NAME/snapshots/HASH`) as its
    repository id ORG/NAME, another `hf:` folder by its name, else the model and its pretrained tag."""
    model = config["model"]
    if model.startswith(("hf:", "local-dir:")):
        folder = Path(model.split(":", 1)[1].rstrip("/"))
        if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
            return folder.parent.parent.name[len("models--"):].replace("--", "/")
        return folder.name
    return f"{model} ({config['pretrained']})" if config.get("pretrained") else model


#: characters that Markdown or HTML would read as markup in a card's body
_MARKUP = str.maketrans({c: f"\\{c}" for c in "\\`*_{}[]()#+!|~"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;",
                                                                        "\n": " ", "\r": " "})


def _text(value: Any) -> str:
    """`value` as plain text in a Markdown body: markup characters escaped, line breaks flattened (a folder name
    or a data path cannot open a heading, a link or an HTML element)."""
    return str(value).translate(_MARKUP)


def _training_rows(config: dict, summary: dict) -> list[tuple[str, str]]:
    rows = [("method", config["method"]), ("training eps (l_inf)", format_eps(config["eps"])),
            ("PGD steps", str(config["pgd_steps"]))]
    known = config["method"] in METHODS
    if known and method_takes(config["method"], "rho") and config.get("rho") is not None:
        rows.append(("rho (margin scale)", f"{config['rho']:g}"))
    authors = method_entry(config["method"]).authors_updates if config["method"] in METHODS else None
    if authors is not None:  # FARE, TeCoA: their authors' count, or K as the equal-updates control
        equal = config.get("baseline_updates") == "equal"
        rows.append(("encoder updates per adversarial batch", f"{config.get('primal_steps')} (equal-updates control)"
                     if equal else f"{authors} (as its authors trained it)"))
    if known and method_takes(config["method"], "dual_preset"):  # the constrained methods: K and their dual
        rows += [("K (primal steps per dual step)", str(config.get("primal_steps"))),
                 ("dual preset", str(config.get("dual_preset")))]
    rows += [("batches trained", f"{summary.get('step')} of {summary.get('total_steps')}"),
             ("batch size (per device) x devices", f"{config['batch_size']} x {summary.get('world_size', 1)}"),
             ("learning rate", f"{config['lr']:g}"), ("training data", _text(config["data"]))]
    data = (summary.get("provenance") or {}).get("data") or {}
    if data.get("sha256"):
        rows.append(("training data fingerprint", f"{data.get('files')} files, SHA-256 {data['sha256']}"))
    elif data.get("items") is not None:
        rows.append(("training data fingerprint", f"{data['items']} items"
                     + (f", labels SHA-256 {data['labels_sha256']}" if data.get("labels_sha256") else "")))
    return rows


def _evaluation_lines(report: Optional[dict]) -> list[str]:
    if report is None:
        return ["Not evaluated: no `lore eval` of this run folder has been recorded, so this card states no accuracy."]
    config = report.get("config", {})
    attacks = _attacks(report)
    lines = [f"`lore eval` on {report['n_samples']} images of {_text(config.get('data', '?'))} (seed "
             f"{config.get('seed')}), head: {_text(report.get('head', '?'))}.", "",
             "| eps | " + " | ".join(["clean", *attacks]) + " |", "|---" * (2 + len(attacks)) + "|",
             "| 0 | " + f"{report['clean_accuracy']:.4f}" + " |" * len(attacks) + " |"]
    for eps, row in report.get("robust_accuracy", {}).items():
        lines.append(f"| {eps} | | " + " | ".join(f"{row[a]:.4f}" for a in attacks) + " |")
    if attacks:
        targets = f", {config.get('n_targets')} DLR-T targets" if any("apgd-t" in a for a in attacks) else ""
        lines += ["", f"Attacks: APGD, {config.get('n_iter')} iterations, {config.get('restarts')} restart(s){targets}"
                  + ("; `apgd-ce+apgd-t` is the worst case of both." if "apgd-ce+apgd-t" in attacks else ".")]
    lines += [f"Skipped: {s['attack']} ({s['reason']})." for s in report.get("skipped", [])]
    absent = [name for key, name in (("robust_accuracy", "white-box attacks"), ("square", "Square (black box)"),
                                     ("gaussian_noise", "Gaussian noise"), ("corruptions", "corruptions"))
              if not report.get(key)]
    if absent:
        lines += [f"Not measured: {', '.join(absent)}."]
    return lines


def _attacks(report: dict) -> list[str]:
    robust = report.get("robust_accuracy", {})
    return [key for key in next(iter(robust.values()), {}) if key != "robust_mask"] if robust else []


def _loading_lines(library: str, export: Path) -> list[str]:
    """How to load the export in open_clip, in `transformers` and in lore (PATH: the run folder)."""
    lore = "- lore: `lore.load_exported(\"PATH/export\")` (an `ImageEncoder`: pixels in [0, 1] -> embeddings) or `lore eval --model PATH`."
    if library == "transformers":
        return ["- transformers:", "", "```python", "from transformers import AutoModel, CLIPVisionModelWithProjection",
                "model = AutoModel.from_pretrained(\"PATH/export\")  # the whole model",
                "tower = CLIPVisionModelWithProjection.from_pretrained(\"PATH/export\")  # the tower alone (SigLIP: "
                "SiglipVisionModel; DINOv2: Dinov2Model)", "```", "",
                "- open_clip: not directly; this is a transformers folder.", lore]
    if library == "open_clip":
        return ["- open_clip:", "", "```python", "import open_clip",
                "model, _, preprocess = open_clip.create_model_and_transforms(\"local-dir:PATH/export\")", "```", "",
                "- transformers: convert first, `lore export PATH --format hf --output PATH/hf` (ViT CLIP models), then "
                "`CLIPModel.from_pretrained(\"PATH/hf\")`.", lore]
    return ["- open_clip, transformers: not loadable (a timm or digits encoder).", lore]


def model_card(run_folder: Union[str, Path], report: Optional[dict] = None, *,
               report_sha256: Optional[str] = None) -> str:
    """The card text of `run_folder`'s export, from config.json, summary.json and an optional `lore eval` report
    (`report_sha256`: the SHA-256 of its copy, evaluation.json, named on the card)."""
    run_folder = Path(run_folder)
    config = check_card_sources(run_folder)
    summary = json.loads((run_folder / "summary.json").read_text()) if (run_folder / "summary.json").is_file() else {}
    export = run_folder / "export"
    library = _library(export)
    provenance = summary.get("provenance") or {}
    code = provenance.get("code") or {}
    tags = list(dict.fromkeys(["lore", "adversarial-robustness", "image-feature-extraction", config["method"]]))
    header = ["---", f"base_model: {_yaml(_base_model(config))}", f"library_name: {_yaml(library)}",
              f"tags: {_yaml(tags)}", f"lore_method: {_yaml(config['method'])}",
              f"lore_eps: {_yaml(format_eps(config['eps']))}",
              f"lore_evaluated: {_yaml(report is not None)}", "---", ""]
    body = [f"# {config['method'].upper()} robust fine-tune of {_text(_base_model(config))}", "",
            "Adversarially fine-tuned image encoder written by `lore train` (LORE: per-sample constraints keeping "
            "phi(x) near the original phi_0(x)). Generated from the run's records; nothing on it was typed by hand.", "",
            "## Training", "", "| setting | value |", "|---|---|"]
    body += [f"| {name} | {value} |" for name, value in _training_rows(config, summary)]
    evaluation = _evaluation_lines(report)
    if report_sha256 is not None:
        evaluation += ["", f"The report: `{REPORT_COPY}` beside this card, SHA-256 {report_sha256}."]
    body += ["", "## Evaluation", "", *evaluation, "", "## Provenance", "",
             f"- code: lore {code.get('package', '?')}, commit {code.get('commit') or 'unknown'}"
             + (" (uncommitted changes)" if code.get("dirty") else ""),
             f"- weights SHA-256 (the fine-tuned encoder): {provenance.get('weights_sha256', 'not recorded')}",
             "", "## Loading", "", *_loading_lines(library, export), ""]
    return "\n".join(header + body)


def write_model_card(run_folder: Union[str, Path], report: Optional[dict] = None) -> Path:
    """Writes (atomically) export/README.md of `run_folder`, and with a report its copy export/evaluation.json.

    The card and its report copy are two files: the old copy is removed first and the new one written last, so
    an interruption leaves a card whose evaluation matches the report beside it, or no report beside it, never
    a card that says "not evaluated" next to an evaluation (the card names the report's SHA-256)."""
    export = Path(run_folder) / "export"
    path = export / CARD
    if report is None:
        write_text_atomic(path, model_card(run_folder, None))
        return path
    copy = dumps(report, indent=2)
    (export / REPORT_COPY).unlink(missing_ok=True)
    write_text_atomic(path, model_card(run_folder, report, report_sha256=hashlib.sha256(copy.encode()).hexdigest()))
    write_text_atomic(export / REPORT_COPY, copy)
    return path


__all__ = ["CARD", "model_card", "write_model_card"]
