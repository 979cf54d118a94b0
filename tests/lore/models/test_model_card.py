"""Every export carries a model card generated from the run's records: YAML front matter plus markdown, "not
evaluated" until `lore eval` scores the run folder, then exactly the report's numbers."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from lore.evaluation.config import EvalConfig
from lore.evaluation.run import run_evaluation
from lore.training.config import TrainConfig
from lore.training.engine import train


def _front_matter(text: str) -> tuple[dict, str]:
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, flags=re.S)
    assert match, text[:200]
    return yaml.safe_load(match.group(1)), match.group(2)


@pytest.fixture
def finished_run(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(model="digits-cnn", output=str(run), max_steps=2, batch_size=8, pgd_steps=1, primal_steps=1,
                      probe_every=0, method="lore", eps=8 / 255, device="cpu"))
    return run


def test_an_unevaluated_run_says_so_and_names_its_settings_and_provenance(finished_run):
    header, body = _front_matter((finished_run / "export" / "README.md").read_text())
    assert header["lore_method"] == "lore" and header["lore_eps"] == "8/255" and header["lore_evaluated"] is False
    assert header["library_name"] == "lore" and "adversarial-robustness" in header["tags"]
    assert "Not evaluated" in body and "accuracy" not in body.split("## Evaluation")[1].split("## Provenance")[0].replace(
        "states no accuracy", "")
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["provenance"]["weights_sha256"] in body
    assert "| batches trained | 2 of 2 |" in body and "| K (primal steps per dual step) | 1 |" in body


def test_after_lore_eval_the_card_holds_the_reports_numbers(finished_run, tmp_path):
    report = run_evaluation(EvalConfig(model=str(finished_run), data="digits", attacks="apgd-ce", eps="4/255,8/255",
                                       n_iter=5, n_samples=60, output=str(tmp_path / "eval"), device="cpu"))
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["clean_accuracy"] == report["clean_accuracy"]
    header, body = _front_matter((finished_run / "export" / "README.md").read_text())
    assert header["lore_evaluated"] is True
    evaluation = body.split("## Evaluation")[1].split("## Provenance")[0]
    assert f"| 0 | {saved['clean_accuracy']:.4f} |" in evaluation
    for eps, row in saved["robust_accuracy"].items():
        assert f"| {eps} | | {row['apgd-ce']:.4f} |" in evaluation
    assert "60 images" in evaluation and "5 iterations" in evaluation
    assert json.loads((finished_run / "export" / "evaluation.json").read_text())["clean_accuracy"] == saved["clean_accuracy"]
