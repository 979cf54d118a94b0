"""A user's package extends lore without editing it: a model family, an evaluation attack, a training attack and a
method registered from tests/ alone reach `lore train` and `lore eval` through the command line, and an installed
entry point registers too."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

from lore import plugins, registry
from lore.cli import main
from lore.evaluation import attacks
from lore.models import families
from lore.training import attacks as training_attacks

# ---- the user's code: nothing below edits lore ----------------------------------------------------------------


def build_toy(name, pretrained, image_size, *, cache_dir, seed, device, allow_missing=False):
    """A "toy:WIDTH" encoder: a small CNN at random initialisation (no text tower)."""
    from lore.models import BuiltModel, small_digits_encoder

    torch.manual_seed(seed)
    width = int(name.removeprefix("toy:"))
    return BuiltModel(small_digits_encoder(embed_dim=16, width=width).to(device), image_size or 16, kind="toy")


def export_toy(built, model_name, folder, replace):
    from lore.files import staged_folder
    from lore.jsonio import write_json
    from lore.models import save_state_file

    with staged_folder(folder, replace=replace) as staging:
        save_state_file(built.encoder.backbone.state_dict(), staging / "toy.safetensors")
        write_json(staging / "toy.json", {"model": model_name})
    return folder


def sign_noise(classifier, images, labels, eps, settings, generator):
    """Fooled by one random corner of the eps-ball."""
    noise = torch.randint(0, 2, images.shape, generator=generator, device=images.device) * 2.0 - 1.0
    with torch.no_grad():
        return classifier((images + eps * noise).clamp(0, 1)).argmax(1) != labels


CORNER_CALLS: list[dict] = []


def corner_start(objective, images, *, eps, steps, generator=None, initial_delta=None, **_):
    """A training attack: the better of the run's own uniform start and its sign, after no gradient step."""
    CORNER_CALLS.append({"eps": eps, "steps": steps, "start_given": initial_delta is not None})
    corner = initial_delta.sign() * eps
    with torch.no_grad():
        better = objective((images + corner).clamp(0, 1)) > objective((images + initial_delta).clamp(0, 1))
    delta = torch.where(better[:, None, None, None], corner, initial_delta)
    return ((images + delta).clamp(0, 1) - images).detach()


def fare_l1(weight):
    """FARE with an l1 embedding loss, scaled by `weight` (read from --naive-weight)."""
    from lore import Method

    return Method("fare-l1", lambda adversarial, batch: weight * (adversarial - batch.reference).abs().sum(1),
                  authors_updates=1)


@pytest.fixture
def registered():
    """Registers the four and removes them afterwards, as they were."""
    saved = [(table, dict(table)) for table in (registry._REGISTERED, attacks._REGISTERED, families._REGISTERED,
                                                training_attacks._REGISTERED)]
    training_attacks.register_training_attack(training_attacks.TrainingAttackEntry("corner-start", corner_start))
    families.register_model_family(families.ModelFamily("toy", build_toy, prefix="toy:", export=export_toy))
    attacks.register_attack(attacks.AttackEntry("sign-noise", sign_noise, summary="one random corner"))
    registry.register_method(registry.MethodEntry("fare-l1", {"weight": "naive_weight"}, "FARE, l1",
                                                  authors_updates=1, factory=fare_l1))
    yield
    for table, contents in saved:
        table.clear()
        table.update(contents)


def test_lore_train_and_eval_reach_a_users_family_attack_and_method(registered, tmp_path, lore_cache):
    run = tmp_path / "run"
    CORNER_CALLS.clear()
    assert main(["train", "--model", "toy:8", "--method", "fare-l1", "--naive-weight", "2", "--attack", "corner-start",
                 "--output", str(run), "--cache-dir", str(lore_cache), "--max-steps", "2", "--batch-size", "16",
                 "--eps", "8/255", "--pgd-steps", "1", "--probe-every", "0", "--device", "cpu"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "fare-l1" and config["naive_weight"] == 2 and config["model"] == "toy:8"
    assert config["attack"] == "corner-start"
    assert CORNER_CALLS == [{"eps": 8 / 255, "steps": 1, "start_given": True}] * 2  # once per batch, the run's start
    assert json.loads((run / "export" / "toy.json").read_text()) == {"model": "toy:8"}  # the family's exporter
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 2

    report_dir = tmp_path / "eval"
    assert main(["eval", "--model", "toy:8", "--attacks", "apgd-ce,sign-noise", "--eps", "8/255", "--n-iter", "2",
                 "--samples", "40", "--head-samples", "200", "--cache-dir", str(lore_cache), "--output",
                 str(report_dir), "--device", "cpu", "--workers", "1"]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    robust = report["robust_accuracy"]["8/255"]
    assert set(robust) == {"apgd-ce", "apgd-ce+sign-noise"}
    assert robust["apgd-ce+sign-noise"] <= robust["apgd-ce"] <= report["clean_accuracy"]  # the cascade's policy


def test_settings_a_users_method_does_not_read_are_refused(registered, tmp_path, capsys):
    assert main(["train", "--method", "fare-l1", "--rho", "0.2", "--output", str(tmp_path / "r"),
                 "--device", "cpu"]) == 2
    assert "rho" in capsys.readouterr().err


def test_a_family_without_exporter_is_refused_before_training(registered, tmp_path, lore_cache, capsys):
    families.register_model_family(families.ModelFamily("toy", build_toy, prefix="toy:"), replace=True)
    assert main(["train", "--model", "toy:8", "--method", "fare", "--output", str(tmp_path / "r"), "--cache-dir",
                 str(lore_cache), "--max-steps", "2", "--batch-size", "16", "--probe-every", "0",
                 "--device", "cpu"]) == 2
    assert "model family 'toy' registers no exporter" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_a_registered_family_claims_its_names_before_open_clip(registered):
    assert families.family_for("toy:8").name == "toy"
    assert families.family_for("timm:vit_tiny").name == "timm"
    assert families.family_for("digits-clip").name == "digits-clip"
    assert families.family_for("ViT-B-32").name == families.FALLBACK
    with pytest.raises(ValueError, match="prefix 'toy:' is 'toy'"):
        families.register_model_family(families.ModelFamily("toy2", build_toy, prefix="toy:"))
    with pytest.raises(ValueError, match="claims no names"):
        families.register_model_family(families.ModelFamily("toy3", build_toy))


def test_a_wrong_attack_result_is_named(registered):
    from lore.evaluation import EvalSettings, robust_accuracy

    attacks.register_attack(attacks.AttackEntry("bad", lambda *args: torch.zeros(3)))
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    images, labels = torch.rand(6, 3, 4, 4), torch.zeros(6, dtype=torch.long)
    labels = classifier(images).argmax(1).detach()  # every point clean-correct, so the attack runs
    with pytest.raises(ValueError, match="attack 'bad' must return a bool tensor of shape \\(6,\\)"):
        robust_accuracy(classifier, images, labels, 8 / 255, EvalSettings(attacks=("bad",), progress=False))


# ---- an installed package's entry point ------------------------------------------------------------------------


def _install(tmp_path, monkeypatch, target: str, body: str) -> None:
    """A package `fakeplugin` with an entry point `lore.plugins: fake = TARGET`, installed on sys.path."""
    (tmp_path / "fakeplugin").mkdir()
    (tmp_path / "fakeplugin" / "__init__.py").write_text(textwrap.dedent(body))
    info = tmp_path / "fakeplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lore.plugins]\nfake = {target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_state", {"loaded": False})


def test_an_entry_point_registers_its_method_on_first_read(tmp_path, monkeypatch):
    saved = dict(registry._REGISTERED)
    _install(tmp_path, monkeypatch, "fakeplugin:register", """
        from lore.registry import MethodEntry, register_method

        def register():
            register_method(MethodEntry("plugged", {}, "from an entry point", factory="lore.methods:fare"))
        """)
    try:
        assert "plugged" in registry.method_names()
        assert registry.method_entry("plugged").summary == "from an entry point"
        from lore.cli import build_parser

        train = next(a for a in build_parser()._subparsers._group_actions if a.dest == "command").choices["train"]
        assert "plugged" in next(a for a in train._actions if a.dest == "method").choices
    finally:
        registry._REGISTERED.clear()
        registry._REGISTERED.update(saved)
        sys.modules.pop("fakeplugin", None)


def test_a_broken_entry_point_is_named(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "fakeplugin:missing", "")
    try:
        with pytest.raises(ImportError, match="lore plugin 'fake' \\(fakeplugin:missing\\) could not be loaded"):
            registry.method_names()
    finally:
        sys.modules.pop("fakeplugin", None)


def test_an_unknown_training_attack_is_refused_with_the_registered_ones(capsys):
    from lore.training.config import TrainConfig

    with pytest.raises(ValueError, match=r"attack must be one of \('pgd',.*got 'fgsm'"):
        TrainConfig(attack="fgsm")
    with pytest.raises(SystemExit):
        main(["train", "--attack", "fgsm"])
    assert "invalid choice: 'fgsm'" in capsys.readouterr().err
