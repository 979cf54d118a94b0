"""`lore train` without a run: help, config validation, checkpoint errors, options reaching the method.

The end-to-end runs (outputs, kill-and-resume, torchrun DDP, ...) are tests/pipeline/test_train_runs.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lore.training.checkpoint import CheckpointError, load_checkpoint
from lore.cli import build_parser, main
from lore.training.config import TrainConfig, parse_eps


def method_of(config):
    """The `Method` a `TrainConfig` names, as the engine builds it."""
    from lore.methods import build_method

    return build_method(config.method, config)


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in text, field.name
    assert "--resume" in text and "--config" in text


def test_config_validation_names_the_bad_value(tmp_path):
    assert parse_eps("4/255") == pytest.approx(4 / 255)
    with pytest.raises(ValueError, match="eps must look like 4/255"):
        parse_eps("four")
    with pytest.raises(ValueError, match="method must be one of"):
        TrainConfig(method="lora")
    with pytest.raises(ValueError, match="unknown config keys \\['learning_rate'\\]"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    args = build_parser().parse_args(["train", "--config", str(bad)])
    with pytest.raises(ValueError, match="not valid JSON"):
        from lore.cli import config_from_args

        config_from_args(args)


def test_corrupt_and_foreign_checkpoints_give_clear_errors(tmp_path):
    fingerprint = TrainConfig().resume_fingerprint()
    truncated = tmp_path / "last.pt"
    torch.save({"format_version": 1, "payload": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated, fingerprint)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a lore training checkpoint"):
        load_checkpoint(foreign, fingerprint)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt", fingerprint)


def test_config_options_reach_the_method_and_the_dual_optimizer():
    from constrained import AugmentedLagrangian, FixedMargin, Lagrangian, NormMargin

    default = method_of(TrainConfig())
    assert isinstance(default.formulation, Lagrangian) and isinstance(default.constraint.margin, NormMargin)
    assert isinstance(method_of(TrainConfig(penalty=20.0)).formulation, AugmentedLagrangian)
    assert isinstance(method_of(TrainConfig(adaptive_margin=False, rho=0.3)).constraint.margin, FixedMargin)
    assert method_of(TrainConfig(dual_features="unit-rms")).multiplier(8).normalize is True
    raw = method_of(TrainConfig()).multiplier(8)  # the default: the paper's raw phi_0(x)
    assert not raw.standardize and not raw.normalize
    assert method_of(TrainConfig(dual_preset="embedded")).multiplier(8).standardize is True
    with pytest.raises(ValueError, match="dual_features must be one of"):
        TrainConfig(dual_features="whitened")
    assert default.constraint.violation_rate is None  # the paper's violation signal is the default
    rate = method_of(TrainConfig(dual_signal="rate", violation_rate=0.2))
    assert rate.constraint.violation_rate == 0.2
    assert method_of(TrainConfig(dual_preset="embedded", dual_signal="rate")).constraint.violation_rate == 0.05
    for bad in ({"dual_signal": "share"}, {"violation_rate": 1.0}, {"violation_rate": -0.1}, {"dual_preset": "mine"}):
        with pytest.raises(ValueError, match="dual_signal|violation_rate|dual_preset"):
            TrainConfig(**bad)
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = default.dual_ascent(params)  # Algorithm 1: plain ascent at the paper's 5e-4
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["maximize"] and sgd.param_groups[0]["lr"] == 5e-4
    assert sgd.param_groups[0]["momentum"] == 0
    adam = method_of(TrainConfig(dual_optimizer="adam", dual_lr=1.5e-2, dual_beta1=0.0)).dual_ascent(params)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["maximize"] and adam.param_groups[0]["lr"] == 1.5e-2
    assert adam.param_groups[0]["betas"] == (0.0, 0.999)
    with pytest.raises(ValueError, match="dual_optimizer must be one of"):
        TrainConfig(dual_optimizer="rmsprop")
    with pytest.raises(ValueError, match="penalty must be finite and >= 0"):
        TrainConfig(penalty=-1.0)


def test_dual_betas_reach_adam_and_bad_values_are_refused():
    """--dual-beta1/--dual-beta2 are Adam's betas for the dual (beta1 0: no momentum); outside [0, 1) they are
    refused by name."""

    param = torch.nn.Parameter(torch.zeros(3))
    adam = method_of(TrainConfig(dual_optimizer="adam", dual_beta1=0.0)).dual_ascent([param])
    assert adam.param_groups[0]["betas"] == (0.0, 0.999) and adam.param_groups[0]["maximize"]
    adam = method_of(TrainConfig(dual_optimizer="adam", dual_beta1=0.0, dual_beta2=0.5)).dual_ascent([param])
    assert adam.param_groups[0]["betas"] == (0.0, 0.5)
    sgd = method_of(TrainConfig()).dual_ascent([param])
    assert "betas" not in sgd.param_groups[0]
    with pytest.raises(ValueError, match="dual_beta1=0.0 does not apply: the dual optimizer is sgd"):
        TrainConfig(dual_beta1=0.0)
    for bad in (1.0, -0.1):
        for name in ("dual_beta1", "dual_beta2"):
            with pytest.raises(ValueError, match=name):
                TrainConfig(dual_optimizer="adam", **{name: bad})


@pytest.mark.parametrize("init", [0.5, 4.0])
def test_dual_init_is_every_samples_first_lambda(init):
    """--dual-init sets lambda(x) of every sample before the first dual step (any features); a softplus
    network cannot start at 0 and says so, negative values are refused by name."""

    multiplier = method_of(TrainConfig(dual_init=init, dual_features="raw")).multiplier(16)
    values = multiplier(torch.randn(32, 16))
    torch.testing.assert_close(values, torch.full((32,), init), rtol=1e-6, atol=1e-6)
    zero = TrainConfig(dual_init=0.0, dual_features="raw", dual_link="projected")
    assert method_of(zero).multiplier(16)(torch.randn(4, 16)).eq(0).all()
    with pytest.raises(ValueError, match="init must be > 0 for a softplus"):
        method_of(TrainConfig(dual_init=0.0, dual_link="softplus")).multiplier(16)
    with pytest.raises(ValueError, match="dual_init must be finite and >= 0"):
        TrainConfig(dual_init=-1.0)


def test_a_folder_run_without_probe_data_holds_its_probe_out_of_training(tmp_path, digit_folders):
    """`lore train --data FOLDER` without --probe-data: the probe's images and the training images are disjoint
    and together the folder; probe_images.txt lists the probe, and training batches never load one of them."""
    from lore.data.specs import PROBE_SHARE
    from lore.training import engine, run_data, run_folder
    from lore.training.distributed import DistInfo

    folder, _ = digit_folders  # 80 digit PNGs
    run = tmp_path / "run"
    config = TrainConfig(model="digits-cnn", data=str(folder), output=str(run), max_steps=2, batch_size=8,
                         pgd_steps=1, probe_size=12, probe_every=1, method="fare")
    loaded = []
    original = engine.training_batches

    def recording(dataset, *args, **kwargs):
        for images, labels, indices in original(dataset, *args, **kwargs):
            loaded.extend(dataset.base.source(int(i)) for i in indices)  # items carry the folder's own index
            yield images, labels, indices

    engine.training_batches = recording
    try:
        engine.train(config)
    finally:
        engine.training_batches = original
    probe_files = (run / run_folder.PROBE_FILES).read_text().split()
    every = {str(p) for p in folder.rglob("*.png")}
    assert len(probe_files) == min(12, round(PROBE_SHARE * 80)) and set(probe_files) <= every
    train, probe = run_data.train_and_probe_sets(config, 16, DistInfo(rank=1, world_size=1, local_rank=0))
    training_files = {train.source(i) for i in range(len(train))}
    assert training_files.isdisjoint(probe_files) and training_files | set(probe_files) == every
    assert loaded and set(loaded) <= training_files  # what the batches loaded came from the training part only


def test_no_save_optimizer_state_writes_a_smaller_checkpoint_and_a_resume_says_what_it_lost(tmp_path):
    """--no-save-optimizer-state: last.pt holds no AdamW moments (they are twice the trainable weights), a resume
    from it warns that the moments restart, and a checkpoint with them resumes silently."""
    import warnings

    from lore.training.engine import train
    from lore.training.run_folder import LAST

    sizes = {}
    for keep in (True, False):
        config = TrainConfig(model="digits-cnn", output=str(tmp_path / str(keep)), max_steps=2, batch_size=8, pgd_steps=1,
                             probe_every=0, checkpoint_every=1, method="fare", save_optimizer_state=keep)
        train(config)
        state = torch.load(tmp_path / str(keep) / LAST, weights_only=True)
        assert (state["optimizer"] is not None) == keep
        sizes[keep] = (tmp_path / str(keep) / LAST).stat().st_size
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert train(config, resume=True).status == "finished"  # from the last checkpoint: nothing left to train
        said = [str(w.message) for w in caught if "AdamW moments" in str(w.message)]
        assert bool(said) == (not keep), said
    weights = sum(p.numel() * 4 for p in torch.load(tmp_path / "True" / LAST, weights_only=True)["encoder"].values())
    assert sizes[True] - sizes[False] > 1.9 * weights  # the two moments of every trainable weight


@pytest.mark.parametrize("model", ["digits-cnn", "tiny-open-clip", "tiny-hf-clip"])
def test_the_predicted_disk_use_matches_the_files_written(tmp_path, capsys, monkeypatch, model, tiny_clip_dir):
    """The start-of-run prediction of last.pt and the export, from the tensors' bytes, is within 0.5 % + 64 kB
    of the files (their containers add names and headers), with and without the optimizer state."""
    from lore.training import assembly, engine, run_folder
    from lore.training.disk import format_bytes

    predicted = []
    original = assembly.predict_disk_use
    monkeypatch.setattr(assembly, "predict_disk_use", lambda *a, **k: predicted.append(original(*a, **k)) or predicted[-1])
    name = f"local-dir:{tiny_clip_dir}" if model == "tiny-open-clip" else model
    if model == "tiny-hf-clip":  # the prediction counts the weights; the line says the other files come on top
        from hf_checkpoints import clip_folder

        name = f"hf:{clip_folder(tmp_path / 'hf-clip')}"
    for keep in (True, False):
        run = tmp_path / f"{model}-{keep}"
        engine.train(TrainConfig(model=name, output=str(run), max_steps=1, batch_size=4, pgd_steps=1, primal_steps=1,
                                 probe_every=0, checkpoint_every=1, method="lore", save_optimizer_state=keep))
        use = predicted[-1]
        assert (use.moments > 0) == keep
        said = capsys.readouterr().out
        assert f"disk: last.pt about {format_bytes(use.checkpoint)}" in said
        assert f"the export's weights about {format_bytes(use.export)} (plus its config" in said
        written = (run / run_folder.LAST).stat().st_size
        exported = sum(f.stat().st_size for f in (run / "export").glob("*.safetensors"))
        assert abs(use.checkpoint - written) <= 0.005 * written + 64e3, (use, written)
        assert abs(use.export - exported) <= 0.005 * exported + 64e3, (use, exported)


def test_the_closing_line_gives_the_runs_mean_rate_and_naive_shows_no_share_inside_a_zero_margin(tmp_path, capsys):
    """The final "done" line showed the last batch's img/s (116 shown, 17.6 real), and naive showed sat 0.00
    throughout: its margin is 0, so no sample can be strictly inside it."""
    import json
    import re

    run = tmp_path / "naive"
    from lore.training.engine import train

    train(TrainConfig(model="digits-cnn", output=str(run), max_steps=3, batch_size=8, pgd_steps=1, probe_every=0,
                      method="naive", log_every=1, device="cpu"))
    lines = [line for line in capsys.readouterr().err.splitlines() if "done 3/3" in line]
    assert len(lines) == 1 and "sat –" in lines[0], lines
    shown = float(re.search(r"img/s \(run mean\) ([0-9.e+]+)", lines[0]).group(1))
    seconds = [json.loads(line)["step_seconds"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert shown == pytest.approx(3 * 8 / sum(seconds), rel=0.01)


def test_a_relaxed_run_logs_its_held_out_relaxation(tmp_path, lore_cache):
    """`--relax quadratic --relax-price 4` with lambda held at 1 (dual lr 0): every probe logs u(x) = 1 / 4 on the
    held-out digits; a run with the hard margin logs no relaxation."""
    import json

    from lore.training.engine import train

    common = dict(cache_dir=str(lore_cache), max_steps=1, batch_size=16, pgd_steps=1, probe_every=1, probe_size=32,
                  dual_lr=0.0, dual_init=1.0, device="cpu")
    train(TrainConfig(output=str(tmp_path / "relaxed"), relax="quadratic", relax_price=4.0, **common))
    train(TrainConfig(output=str(tmp_path / "hard"), **common))
    relaxed = [json.loads(line) for line in (tmp_path / "relaxed" / "metrics.jsonl").read_text().splitlines()]
    hard = [json.loads(line) for line in (tmp_path / "hard" / "metrics.jsonl").read_text().splitlines()]
    assert [r["probe/relaxation_mean"] for r in relaxed] == pytest.approx([0.25, 0.25], abs=1e-6)
    assert all(r["probe/relaxation_q90"] == pytest.approx(0.25, abs=1e-6) for r in relaxed)
    assert not any("probe/relaxation_mean" in r for r in hard)
