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


def _config(tmp_path, **values):
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**TrainConfig().to_dict(), **values}))
    (run / "summary.json").write_text(json.dumps({"status": "finished", "step": 1, "total_steps": 1}))
    return run


def test_markup_in_folder_names_and_data_paths_stays_text(tmp_path):
    """A data path or a folder name landed raw in the body: a heading, a link or an HTML element could be
    injected into the published card (the YAML header was already safe)."""
    from lore.models.model_card import model_card

    data = tmp_path / "imgs\n# Injected heading <script>x</script> [link](http://e.vil) |cell|"
    run = _config(tmp_path, data=str(data), model="hf:/models/clip_<b>bold<i>")
    header, body = _front_matter(model_card(run))
    assert header["base_model"] == "clip_<b>bold<i>"  # the header is YAML: quoted, not rendered
    assert "\n# Injected" not in body and "<script>" not in body and "](http" not in body and "<b>" not in body
    assert "\\# Injected heading &lt;script&gt;" in body and "\\|cell\\|" in body
    training = body.split("## Training")[1].split("## Evaluation")[0]
    assert all(line.count("|") - line.count("\\|") == 3 for line in training.splitlines() if line.startswith("|"))


def test_a_model_from_the_hugging_face_cache_names_its_repository(tmp_path):
    """base_model was the snapshot's commit hash."""
    from lore.models.model_card import _base_model

    snapshot = tmp_path / "hub" / "models--openai--clip-vit-base-patch32" / "snapshots" / "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268"
    assert _base_model({"model": f"hf:{snapshot}"}) == "openai/clip-vit-base-patch32"
    assert _base_model({"model": f"hf:{tmp_path / 'my-clip'}/"}) == "my-clip"


def test_an_interrupted_card_write_never_says_not_evaluated_beside_an_evaluation(tmp_path, monkeypatch):
    """evaluation.json was written first and the card second: killed between them, the card said "Not evaluated"
    beside its evaluation. Now the old copy goes first and the new copy last, and the card names its hash."""
    import hashlib

    from lore.models import model_card as card
    from lore.models.model_card import REPORT_COPY, write_model_card

    run = _config(tmp_path)
    write_model_card(run)
    report = {"n_samples": 8, "clean_accuracy": 0.5, "config": {"data": "digits", "seed": 0}, "head": "zero-shot"}
    original = card.write_text_atomic
    writes = []

    def killed_at_the_second_write(path, text):
        writes.append(path.name)
        if len(writes) == 2:
            raise KeyboardInterrupt
        original(path, text)

    monkeypatch.setattr(card, "write_text_atomic", killed_at_the_second_write)
    with pytest.raises(KeyboardInterrupt):
        write_model_card(run, report)
    text = (run / "export" / "README.md").read_text()
    assert writes == ["README.md", REPORT_COPY] and not (run / "export" / REPORT_COPY).exists()
    assert "Not evaluated" not in text and "| 0 | 0.5000 |" in text
    monkeypatch.setattr(card, "write_text_atomic", original)
    write_model_card(run, report)
    copy = (run / "export" / REPORT_COPY).read_bytes()
    assert hashlib.sha256(copy).hexdigest() in (run / "export" / "README.md").read_text()


def test_eval_of_a_run_whose_config_json_is_not_lores_is_refused_before_any_report(finished_run, tmp_path, capsys):
    """After `lore export RUN --output RUN` replaced config.json, `lore eval --model RUN` died with KeyError
    'method', after report.json was written."""
    from lore.cli import main

    (finished_run / "config.json").write_text(json.dumps({"architectures": ["CLIPModel"], "model_type": "clip"}))
    assert main(["eval", "--model", str(finished_run), "--output", str(tmp_path / "eval"), "--device", "cpu",
                 "--attacks", "", "--samples", "8"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "is not the config.json `lore train` writes: its 'model' is 'missing'" in said[0]
    assert not (tmp_path / "eval" / "report.json").exists()
