"""First contact with the `lore` CLI: every input error is one line naming the input, exit code 2; help is instant."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lore.cli import build_parser, main
from lore.training.config import TrainConfig
from lore.evaluation.config import EvalConfig

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lore", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=ONE_THREAD)


def assert_one_line_error(done, *needles):
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) <= 2, done.stderr  # argparse adds a usage line before its own one-line error
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_train_eps_abc_prints_the_library_message_not_argparse_s():
    done = run_cli("train", "--eps", "abc")
    assert_one_line_error(done, "eps must look like 4/255", "'abc'")
    assert "invalid parse_eps value" not in done.stderr


def test_eval_of_a_missing_model_path_is_one_line(tmp_path):
    assert_one_line_error(run_cli("eval", "--model", "/no/such/run", "--output", tmp_path), "/no/such/run")


def test_eval_of_an_interrupted_run_folder_without_export_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text("")
    (run / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    assert main(["eval", "--model", str(run), "--output", str(tmp_path / "e"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "without an export" in error and "interrupted" in error and "--resume" in error


def test_eval_of_an_unknown_model_name_is_one_line(tmp_path, capsys):
    assert main(["eval", "--model", "ViT-Q-99", "--output", str(tmp_path), "--device", "cpu"]) == 2
    assert "not an open_clip architecture" in capsys.readouterr().err


def test_eval_missing_data_is_one_line(tmp_path, capsys, lore_cache):
    assert main(["eval", "--data", str(tmp_path / "missing"), "--cache-dir", str(lore_cache), "--output",
                 str(tmp_path / "e"), "--device", "cpu"]) == 2
    assert "missing" in capsys.readouterr().err


def test_plot_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "metrics.jsonl not found" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_unknown_device_is_refused_by_name(command, capsys):
    assert main([command, "--device", "banana"]) == 2
    assert "'banana'" in capsys.readouterr().err


def test_a_single_class_image_folder_is_refused_by_name(tmp_path, capsys, lore_cache):
    from PIL import Image

    (tmp_path / "data" / "only").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "data" / "only" / f"{i}.png")
    assert main(["train", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run"),
                 "--cache-dir", str(lore_cache), "--device", "cpu", "--max-steps", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err


@pytest.mark.parametrize("values, key", [({"max_steps": "5"}, "max_steps"), ({"max_steps": 2.5}, "max_steps"),
                                         ({"seed": "0"}, "seed"), ({"lr": "1e-3"}, "lr"), ({"tensorboard": 1}, "tensorboard")])
def test_config_file_values_of_the_wrong_type_are_refused_by_key(tmp_path, capsys, values, key):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(values))
    assert main(["train", "--config", str(config), "--output", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and key in error and repr(values[key]) in error


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.json")]) == 2
    assert "nope.json not found" in capsys.readouterr().err


def test_help_and_argument_errors_do_not_import_torch():
    code = ("import sys\nfrom lore.cli import build_parser\nbuild_parser().format_help()\n"
            "from lore.training.config import TrainConfig\nfrom lore.evaluation.config import EvalConfig\n"
            "import lore, lore.evaluation\nassert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = run_cli("--help")
    assert done.returncode == 0 and "train" in done.stdout


def test_help_shows_each_default_once_and_eps_as_a_fraction(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 4/255)" in text and "0.0156862" not in text
    assert text.count("(default: the model's own; digits: 16)") == 1
    assert "digits: 16) (default" not in text


def test_train_help_lists_every_train_config_field():
    text = build_parser().format_help()
    assert "train" in text and "eval" in text and "plot" in text
    for field in ("skip-unreadable",):
        assert field in " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())


# ---- lore eval settings that would make a report lie


@pytest.mark.parametrize("values, message", [
    ({"square_queries": -5}, "square_queries must be >= 0"),
    ({"n_targets": 0}, "n_targets must be >= 1 when apgd-t runs"),
    ({"noise_sigmas": "-1"}, "noise_sigmas must be finite and > 0"),
    ({"noise_sigmas": "abc"}, "noise_sigmas must be a comma list"),
    ({"eps": ""}, "eps lists no radius"),
    ({"eps": "4/255,abc"}, "eps must look like"),
    ({"attacks": "fgsm"}, "unknown ['fgsm']"),
    ({"corruptions": "fog"}, "unknown ['fog']"),
    ({"n_samples": 0}, "n_samples must be >= 1"),
])
def test_eval_config_refuses_settings_that_would_mislabel_or_fake_a_result(values, message):
    with pytest.raises(ValueError) as error:
        EvalConfig(**values)
    assert message in str(error.value)


def test_eval_cli_refuses_negative_square_queries_before_any_work(capsys):
    assert main(["eval", "--square-queries", "-5"]) == 2
    assert "square_queries" in capsys.readouterr().err


def test_eval_config_without_targeted_attack_accepts_zero_targets():
    assert EvalConfig(attacks="apgd-ce", n_targets=0).attack_list == ["apgd-ce"]


def test_eval_config_refuses_an_unknown_corruption_by_name():
    with pytest.raises(ValueError, match=r"corruptions: unknown \['fog'\]; choose from \['blur'"):
        EvalConfig(corruptions="blur,fog")


def test_train_config_accepts_ints_for_floats_and_fractions_for_eps():
    config = TrainConfig(lr=1, eps="8/255")
    assert config.lr == 1 and config.eps == pytest.approx(8 / 255)


def test_without_the_vision_stack_a_command_names_the_extra_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("open_clip", "timm") else real(name, *a))
    assert main(["train", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "open_clip, timm cannot be imported" in err and 'pip install "lore-constrained[lore]"' in err


@pytest.mark.parametrize("content, needles", [
    (b'{"seed": 1', ["trunc.json", "not valid JSON"]),
    (b'\xff\xfe{"seed": 1}', ["trunc.json", "not UTF-8"]),
    (b'{"seed": 1e23}', ["seed", "1e+23"]),
    (b'{"seed": 100000000000000000000000}', ["seed", "[0, 2^63)"]),
    (b'{"image_size": -3}', ["image_size", "-3"]),
])
def test_bad_config_files_name_the_file_or_the_field(tmp_path, capsys, content, needles):
    config = tmp_path / "trunc.json"
    config.write_bytes(content)
    assert main(["train", "--config", str(config), "--output", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and all(needle in error for needle in needles), error


@pytest.mark.parametrize("code, advice", [(28, "free space and rerun"), (30, "writable file system")])  # ENOSPC, EROFS
def test_a_full_or_read_only_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch, lore_cache, code, advice):
    import errno
    import os as os_module

    from lore.training import assembly

    assert code == (errno.ENOSPC if "space" in advice else errno.EROFS)

    def failing(*args, **kwargs):
        raise OSError(code, os_module.strerror(code), str(tmp_path / "run" / "last.pt"))

    monkeypatch.setattr(assembly, "save_atomic", failing)
    assert main(["train", "--output", str(tmp_path / "run"), "--cache-dir", str(lore_cache), "--device", "cpu",
                 "--max-steps", "1", "--batch-size", "8", "--pgd-steps", "1", "--primal-steps", "1",
                 "--probe-every", "0"]) == 2
    error = capsys.readouterr().err  # (the progress bar of the one batch also writes to stderr)
    messages = [line for line in error.splitlines() if line.startswith("lore train:")]
    assert len(messages) == 1 and "last.pt" in messages[0] and advice in messages[0] and "Traceback" not in error


def test_eval_into_an_unwritable_output_is_one_line(tmp_path, capsys, monkeypatch, lore_cache):
    from lore.evaluation import run as run_module

    def failing(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / "report.json"))

    monkeypatch.setattr(run_module, "write_report", failing)
    assert main(["eval", "--model", "digits-cnn", "--data", "digits", "--attacks", "", "--n-samples", "10",
                 "--output", str(tmp_path / "out"), "--cache-dir", str(lore_cache), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "report.json" in error and "may write to" in error


@pytest.mark.parametrize("flags, needle", [
    (["--method", "fare", "--penalty", "1"], "--penalty does not apply: method fare does not read it"),
    (["--method", "tecoa", "--rho", "0.1"], "--rho does not apply: method tecoa does not read it"),
    (["--method", "lore", "--naive-weight", "2"], "--naive-weight does not apply: method lore does not read it"),
    (["--method", "fare", "--dual-preset", "paper"], "--dual-preset does not apply: method fare"),
    (["--dual-optimizer", "sgd", "--dual-beta1", "0.9"], "--dual-beta1 does not apply: the dual optimizer is sgd"),
    (["--dual-beta2", "0.5"], "--dual-beta2 does not apply: the dual optimizer is sgd"),
    (["--dual-signal", "violation", "--violation-rate", "0.1"], "--violation-rate does not apply: the dual signal"),
    (["--dual", "scalar", "--dual-hidden", "64"], "--dual-hidden does not apply: the dual is scalar"),
    (["--dual", "linear", "--dual-hidden", "64"], "--dual-hidden does not apply: the dual is linear"),
    (["--method", "naive", "--no-adaptive-margin"], "--adaptive-margin does not apply: method naive"),
    (["--probe-every", "0", "--probe-size", "64"], "--probe-size does not apply: probe_every is 0"),
])
def test_a_flag_the_chosen_method_or_optimizer_does_not_read_is_refused(tmp_path, capsys, flags, needle):
    """Audit: --dual-beta1 with the sgd dual and --penalty with FARE were recorded in config.json and did nothing.
    Even a flag given at its default value is refused: the user believes it does something."""
    assert main(["train", *flags, "--output", str(tmp_path / "run"), "--print-config"]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("values, needle", [
    ({"method": "fare", "penalty": 1.0}, "penalty=1.0 does not apply: method fare does not read it"),
    ({"method": "lore", "dual_beta1": 0.5}, "dual_beta1=0.5 does not apply: the dual optimizer is sgd"),
    ({"method": "tecoa", "dual_preset": "embedded"}, "dual_preset='embedded' does not apply: method tecoa"),
])
def test_a_train_config_with_a_value_its_method_does_not_read_is_refused(values, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        TrainConfig(**values)


def test_the_adam_betas_and_the_rate_share_are_accepted_where_they_apply(capsys):
    assert main(["train", "--dual-optimizer", "adam", "--dual-beta1", "0.5", "--dual-signal", "rate",
                 "--violation-rate", "0.1", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["dual_beta1"], printed["violation_rate"]) == (0.5, 0.1)
    # a config.json of a FARE run records the default dual values; reading it back is not refused
    assert TrainConfig.from_dict(TrainConfig(method="fare").to_dict()).method == "fare"


def test_train_help_names_hf_models(capsys):
    """`lore train --help`'s --model text did not mention hf:."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'hf:PATH' (a local transformers folder" in text


def test_missing_data_is_refused_before_the_model_is_built_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    """The missing-data error did not list wds:, came after the model had loaded (19 s for an hf: model) and left a
    config.json in --output."""
    from lore.training import assembly

    def never(*args, **kwargs):
        raise AssertionError("the model was built before the data was checked")

    monkeypatch.setattr(assembly, "build_model", never)
    output = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--output", str(output), "--device", "cpu"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "'wds:PATTERN'" in said[0] and "nowhere" in said[0]
    assert not output.exists()
    assert main(["train", "--data", f"wds:{tmp_path}/shards/{{0000..0001}}.tar", "--output", str(output),
                 "--device", "cpu"]) == 2
    assert "2 of 2 shards are missing" in capsys.readouterr().err and not output.exists()


def test_fare_and_tecoa_take_their_authors_update_count_in_lore_train_and_k_as_the_equal_updates_control(capsys):
    """Every method took K = 5 updates per adversarial batch in `lore train`; FARE's authors take one."""
    for method in ("fare", "tecoa"):
        assert TrainConfig(method=method).updates_per_batch == 1
        assert TrainConfig(method=method, baseline_updates="equal").updates_per_batch == 5
        assert TrainConfig(method=method, baseline_updates="equal", primal_steps=3).updates_per_batch == 3
    for method in ("naive", "lore", "tecoa-l2", "tecoa-kl"):
        assert TrainConfig(method=method).updates_per_batch == 5
    assert main(["train", "--method", "fare", "--primal-steps", "3", "--device", "cpu"]) == 2
    assert "takes its authors' 1 update per adversarial batch; --baseline-updates equal gives it K" in capsys.readouterr().err
    assert main(["train", "--method", "lore", "--baseline-updates", "equal", "--device", "cpu"]) == 2
    assert "only FARE and TeCoA have their own count" in capsys.readouterr().err


def test_the_engine_hands_the_step_the_configs_update_count(tmp_path, monkeypatch):
    from lore.training import assembly, engine

    seen = []
    original = assembly.RobustStep

    def recording(*args, **kwargs):
        step = original(*args, **kwargs)
        seen.append(step.primal_steps)
        return step

    monkeypatch.setattr(assembly, "RobustStep", recording)
    for updates in ("authors", "equal"):
        engine.train(TrainConfig(method="fare", baseline_updates=updates, output=str(tmp_path / updates), max_steps=1,
                                 batch_size=8, pgd_steps=1, probe_every=0, device="cpu"))
    assert seen == [1, 5]


def test_a_resilient_margin_from_the_command_line_reaches_the_step(tmp_path, monkeypatch, capsys):
    """--relax quadratic --relax-price 4 gives LORE's constraint Quadratic(4): its dual ascends on g - lambda / 4."""
    from constrained import Linear, Quadratic
    from lore.methods import build_method
    from lore.training import assembly

    assert build_method("lore", TrainConfig(method="lore", relax="quadratic", relax_price=4.0)).constraint.relax \
        == Quadratic(4.0)
    assert build_method("tecoa-l2", TrainConfig(method="tecoa-l2", relax="linear", relax_price=0.5)).constraint.relax \
        == Linear(0.5)
    assert build_method("lore", TrainConfig(method="lore")).constraint.relax is None  # the paper's hard margin
    seen = []
    original = assembly.RobustStep

    def recording(*args, **kwargs):
        step = original(*args, **kwargs)
        seen.append(step.method.constraint.relax)
        return step

    monkeypatch.setattr(assembly, "RobustStep", recording)
    assert main(["train", "--method", "lore", "--relax", "quadratic", "--relax-price", "4", "--output",
                 str(tmp_path / "run"), "--max-steps", "1", "--batch-size", "8", "--pgd-steps", "1",
                 "--probe-every", "0", "--device", "cpu"]) == 0
    assert seen == [Quadratic(4.0)]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["relax"] == "quadratic"
    assert main(["train", "--method", "fare", "--relax", "linear", "--device", "cpu"]) == 2
    assert "relax" in capsys.readouterr().err


def test_a_user_relaxation_cost_and_a_price_together_are_refused():
    import pytest

    from constrained import Quadratic
    from lore import lore

    assert lore(relax=Quadratic(2.0)).constraint.relax == Quadratic(2.0)
    with pytest.raises(ValueError, match="relax_price=3.0 prices the named relaxations only"):
        lore(relax=Quadratic(2.0), relax_price=3.0)
    with pytest.raises(ValueError, match="relax must be one of"):
        lore(relax="cubic")
