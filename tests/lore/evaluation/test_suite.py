"""The evaluation suite: protocol, edge cases, determinism, report schema, masking checks, linear head, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from lore.attacks import GradientMaskingWarning, check_gradient_masking
from lore.evaluation import EvalSettings, evaluate, fit_linear_head
from lore.evaluation.report import markdown_table, write_report


class Constant(torch.nn.Module):
    """Ignores its input: robust by construction."""

    def __init__(self, num_classes=10, label=3):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(num_classes))
        with torch.no_grad():
            self.logits[label] = 5.0

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)


FAST = dict(n_iter=10, progress=False)


def test_a_constant_model_keeps_full_robust_accuracy():
    images = torch.rand(12, 3, 8, 8)
    labels = torch.full((12,), 3)
    with pytest.warns(GradientMaskingWarning, match="gradient is exactly zero"):
        report = evaluate(Constant(), images, labels, EvalSettings(eps=[8 / 255, 64 / 255], square_queries=20, **FAST))
    assert report.clean_accuracy == 1.0
    for row in report.robust_accuracy.values():
        assert row == {"apgd-ce": 1.0, "apgd-ce+apgd-t": 1.0}
    assert set(report.square.values()) == {1.0}


def test_an_undefended_model_drops_to_near_zero_at_a_large_eps(digits_classifier):
    model, x, y = digits_classifier
    report = evaluate(model, x[:100], y[:100], EvalSettings(eps=[2 / 255, 32 / 255], **FAST))
    assert report.clean_accuracy > 0.9
    small, large = report.robust_accuracy["2/255"], report.robust_accuracy["32/255"]
    assert large["apgd-ce+apgd-t"] <= 0.05
    assert report.clean_accuracy >= small["apgd-ce"] >= small["apgd-ce+apgd-t"] >= large["apgd-ce+apgd-t"]


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_few_classes_do_not_crash_and_dlr_is_skipped_below_four(num_classes):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, num_classes)).eval()
    images = torch.rand(20, 3, 4, 4)
    with torch.no_grad():
        labels = model(images).argmax(1)
    report = evaluate(model, images, labels, EvalSettings(eps=[0.1], n_targets=9, **FAST))
    row = report.robust_accuracy["0.1"]
    text = markdown_table({**report.as_dict(), "head": "linear probe (fitted on 20 images)"})
    assert "head: linear probe (fitted on 20 images)" in text
    if num_classes < 4:  # targeted DLR cannot run, so no label may claim it did, and the report says why
        assert list(row) == ["apgd-ce"]
        assert report.skipped == [{"attack": "apgd-t", "reason": report.skipped[0]["reason"]}]
        assert f"this classifier has {num_classes}" in report.skipped[0]["reason"]
        assert "skipped: apgd-t (APGD-DLR-T needs at least 4 classes" in text
    else:
        assert 0 <= row["apgd-ce+apgd-t"] <= row["apgd-ce"] <= 1
        assert report.skipped == [] and "skipped" not in text


def test_batch_sizes_that_do_not_divide_the_sample_count(digits_classifier):
    model, x, y = digits_classifier
    a = evaluate(model, x[:23], y[:23], EvalSettings(eps=[8 / 255], batch_size=5, **FAST))
    b = evaluate(model, x[:23], y[:23], EvalSettings(eps=[8 / 255], batch_size=64, **FAST))
    assert a.clean_accuracy == b.clean_accuracy
    for report in (a, b):
        assert 0 <= report.robust_accuracy["8/255"]["apgd-ce+apgd-t"] <= report.clean_accuracy


def test_same_seed_same_report_and_schema(digits_classifier, tmp_path):
    model, x, y = digits_classifier
    settings = EvalSettings(eps=[4 / 255, 8 / 255], square_queries=30, noise_sigmas=[0.1], corruptions=["blur", "jpeg"],
                            seed=3, **FAST)
    first = evaluate(model, x[:30], y[:30], settings)
    second = evaluate(model, x[:30], y[:30], settings)
    assert first == second
    paths = write_report(first.as_dict(), tmp_path, name="digits")
    loaded = json.loads((tmp_path / "report.json").read_text())
    assert set(loaded) >= {"n_samples", "clean_accuracy", "robust_accuracy", "square", "gaussian_noise", "corruptions", "warnings"}
    assert loaded["n_samples"] == 30
    assert set(loaded["robust_accuracy"]) == {"4/255", "8/255"}
    for row in loaded["robust_accuracy"].values():
        assert list(row) == ["apgd-ce", "apgd-ce+apgd-t"] and all(0 <= v <= 1 for v in row.values())
    assert set(loaded["corruptions"]) == {"blur", "jpeg"} and list(loaded["corruptions"]["blur"]) == ["1", "2", "3", "4", "5"]
    assert "| 8/255 |" in (tmp_path / "report.md").read_text()
    assert paths[-1].stat().st_size > 5_000


def test_masking_checks_catch_randomness_and_probabilities():
    torch.manual_seed(0)
    noisy = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(48, 10)).train()
    images, labels = torch.rand(8, 3, 4, 4), torch.zeros(8, dtype=torch.long)
    with pytest.warns(GradientMaskingWarning, match="change between two calls"):
        check_gradient_masking(noisy, images, labels)
    probabilities = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10), torch.nn.Softmax(dim=1))
    with pytest.warns(GradientMaskingWarning, match="look like probabilities"):
        check_gradient_masking(probabilities, images, labels)
    clean = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_gradient_masking(clean, images, labels) == []


def test_linear_head_fits_clean_features(digits_classifier):
    model, x, y = digits_classifier
    encoder = model[0]
    with torch.no_grad():
        features = encoder(x)
    head = fit_linear_head(features, y)
    assert (head(features).argmax(1) == y).float().mean() > 0.95
    with pytest.raises(ValueError, match="must agree"):
        fit_linear_head(features, y[:5])


def test_invalid_settings_are_named():
    with pytest.raises(ValueError, match="unknown attack .fgsm.; choose from"):
        EvalSettings(attacks=["fgsm"])
    with pytest.raises(ValueError, match="unknown corruptions"):
        EvalSettings(corruptions=["fog"])


@pytest.mark.slow
def test_lore_eval_cli_writes_json_table_and_plot(tmp_path, lore_cache):
    help_text = subprocess.run([sys.executable, "-m", "lore", "eval", "--help"], capture_output=True, text=True).stdout
    for flag in ("--model", "--data", "--attacks", "--eps", "--n-samples", "--batch-size", "--seed", "--square-queries"):
        assert flag in help_text
    done = subprocess.run([sys.executable, "-m", "lore", "eval", "--n-samples", "40", "--n-iter", "5", "--eps", "4/255,8/255",
                           "--batch-size", "16", "--noise-sigmas", "0.1", "--cache-dir", str(lore_cache),
                           "--output", str(tmp_path / "eval")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["n_samples"] == 40 and report["head"].startswith("linear")
    assert (tmp_path / "eval" / "robust_accuracy.png").is_file()
    assert markdown_table(report) == (tmp_path / "eval" / "report.md").read_text()


def test_report_accuracies_are_exact_fractions_without_float32_noise(digits_classifier):
    model, x, y = digits_classifier
    report = evaluate(model, x[:37], y[:37], EvalSettings(eps=[8 / 255], noise_sigmas=[0.1], **FAST))
    values = [report.clean_accuracy, *report.robust_accuracy["8/255"].values(), *report.gaussian_noise.values()]
    for value in values:
        assert any(value == k / 37 for k in range(38)), value
    assert repr(report.clean_accuracy) == repr(round(report.clean_accuracy * 37) / 37)


def test_robustness_plot_spaces_eps_by_value(tmp_path, monkeypatch):
    import matplotlib.axes

    from lore.evaluation.report import plot_robustness

    drawn = []
    original = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, *a, **k: drawn.append(a) or original(self, *a, **k))
    report = {"clean_accuracy": 0.9, "robust_accuracy": {e: {"apgd-ce": 0.5} for e in ("1/255", "2/255", "8/255")}}
    plot_robustness({"m": report}, tmp_path / "p.png")
    assert list(drawn[0][0]) == pytest.approx([0, 1, 2, 8])


def test_the_report_json_keeps_its_keys_order_and_values():
    """`EvalReport.as_dict()` writes what the dict report of earlier versions wrote, key for key, in order (the
    JSON below was printed by the dict-returning `evaluate` at 5548b3d). A constant classifier makes every share
    exact (3 of 12 labels are not its class), so the file is the same on any machine."""
    images = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([3] * 9 + [1, 2, 4])
    settings = EvalSettings(eps=[8 / 255, 16 / 255], square_queries=10, noise_sigmas=[0.1], corruptions=["blur", "jpeg"],
                            **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evaluate(Constant(), images, labels, settings, embed=lambda x: torch.ones(x.shape[0], 4),
                          class_embeddings=torch.eye(10, 4))
    row = {"apgd-ce": 0.75, "apgd-ce+apgd-t": 0.75}
    severities = {str(s): 0.75 for s in range(1, 6)}
    expected = (
        '{"n_samples": 12, "clean_accuracy": 0.75, "robust_accuracy": {"8/255": ROW, "16/255": ROW}, "skipped": [], '
        '"warnings": ["the input gradient is exactly zero for 100% of the probed points: gradient-based attacks cannot '
        'move them (gradient masking?); check with Square"], "square": {"8/255": 0.75, "16/255": 0.75}, '
        '"gaussian_noise": {"0.1": 0.75}, "corruptions": {"blur": SEV, "jpeg": SEV}, "alignment": 0.458333}'
    ).replace("ROW", json.dumps(row)).replace("SEV", json.dumps(severities))
    assert json.dumps(report.as_dict()) == expected
    bare = evaluate(Constant(), images, labels, EvalSettings(eps=[8 / 255], **FAST)).as_dict()
    assert list(bare) == ["n_samples", "clean_accuracy", "robust_accuracy", "skipped", "warnings"]  # nothing not run
