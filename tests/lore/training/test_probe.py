"""The training probe runs like a training step: its batch size and its autocast precision."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from constrained import NormMargin
from lore.heads import ZeroShotHead
from lore.training.probe import probe, rank_correlation


def setting():
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16))
    reference = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16)).requires_grad_(False)
    head = ZeroShotHead(torch.randn(3, 16))
    return encoder, reference, head, torch.rand(20, 3, 8, 8), torch.randint(0, 3, (20,))


def watched(encoder):
    seen = {"batches": [], "dtypes": set()}

    def hook(module, inputs, output):
        seen["batches"].append(output.shape[0])
        seen["dtypes"].add(output.dtype)
    encoder[1].register_forward_hook(hook)
    return seen


def test_the_probe_never_runs_a_larger_batch_than_asked():
    encoder, reference, head, images, labels = setting()
    seen = watched(encoder)
    probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(0.1), pgd_steps=2, batch_size=7)
    assert max(seen["batches"]) == 7 and seen["dtypes"] == {torch.float32}


def test_the_probe_runs_under_the_training_precision_and_reports_fp32_statistics():
    encoder, reference, head, images, labels = setting()
    full = probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(0.1), pgd_steps=2)
    seen = watched(encoder)
    bf16 = probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(0.1), pgd_steps=2,
                 autocast_dtype=torch.bfloat16)
    assert torch.bfloat16 in seen["dtypes"]
    assert bf16.keys() == full.keys()
    assert bf16["probe/clean_accuracy"] == pytest.approx(full["probe/clean_accuracy"], abs=0.1)  # 2 of 20 may flip
    assert all(isinstance(v, float) for v in bf16.values())


@pytest.mark.filterwarnings("ignore:An input array is constant")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=3, max_size=40), st.integers(0, 2**31 - 1))
def test_rank_correlation_equals_scipys_spearman_with_ties(values, seed):
    """Against an independent reference: scipy.stats.spearmanr, many ties (lambda = 0 on slack digits)."""
    from scipy.stats import spearmanr

    a = torch.tensor(values, dtype=torch.float32)
    b = torch.randn(len(values), generator=torch.Generator().manual_seed(seed)).round()
    expected = spearmanr(a.numpy(), b.numpy()).statistic
    got = rank_correlation(a, b)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-9)


def test_the_probe_reports_how_lambda_follows_each_images_use_of_its_margin():
    """A multiplier that grows with ||phi_0(x)|| and a margin scaled the same way: the rank correlation is
    that of lambda with the relative deviation, computed independently here."""
    encoder, reference, head, images, labels = setting()

    class Growing(torch.nn.Module):  # the members of MultiplierKind the probe reads
        averages_constraint = per_index = False

        def value(self, features):
            return features.pow(2).sum(1)

    out = probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(0.1), pgd_steps=1,
                multiplier=Growing())
    with torch.no_grad():
        ref, emb = reference(images), encoder(images)
    used = (emb - ref).pow(2).sum(1) / (0.1 * ref.pow(2).sum(1))
    from scipy.stats import spearmanr

    expected = spearmanr(ref.pow(2).sum(1).numpy(), used.numpy()).statistic
    assert out["probe/lambda_deviation_rank_correlation"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("rho", [1e-4, 0.5, 1e4])
def test_the_probe_counts_the_images_near_their_margin(rho):
    """near_fraction is the share with ||phi - phi_0||^2 > 0.9 rho ||phi_0||^2, computed independently here; a huge
    margin leaves no image near it (0, and lambda over the near group is NaN: nothing to average)."""
    encoder, reference, head, images, labels = setting()
    out = probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(rho), pgd_steps=1,
                multiplier=ConstantFeatureMultiplier())
    with torch.no_grad():
        ref, emb = reference(images), encoder(images)
    used = (emb - ref).pow(2).sum(1) / (rho * ref.pow(2).sum(1))
    assert out["probe/near_fraction"] == pytest.approx(float((used > 0.9).float().mean()))
    assert out["probe/near_fraction"] >= 1.0 - out["probe/within_margin"] - 1e-9  # every image outside is near
    if rho == 1e4:
        assert out["probe/near_fraction"] == 0.0 and math.isnan(out["probe/lambda_near_mean"])
    if rho == 1e-4:
        assert out["probe/near_fraction"] == 1.0 and math.isnan(out["probe/lambda_inside_mean"])


class ConstantFeatureMultiplier(torch.nn.Module):
    averages_constraint = per_index = False

    def value(self, features):
        return torch.ones(features.shape[0])


def test_the_probe_reports_the_held_out_relaxation_of_a_resilient_constraint():
    """Quadratic(4): u(x) = lambda(x) / 4, so with lambda(x) = ||phi_0(x)||^2 and the margin 0.1 ||phi_0(x)||^2 every
    bound is relaxed by 2.5 times itself. Linear(beta): u(x) is the violation, clamped at 0, where lambda(x) has
    reached its cap beta, and 0 elsewhere. Both are computed independently here."""
    from constrained import Linear, Quadratic

    encoder, reference, head, images, labels = setting()

    class Growing(torch.nn.Module):
        averages_constraint = per_index = False

        def value(self, features):
            return features.pow(2).sum(1)

    quadratic = probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(0.1), pgd_steps=1,
                      multiplier=Growing(), relax=Quadratic(4.0))
    with torch.no_grad():
        ref, emb = reference(images), encoder(images)
    norms = ref.pow(2).sum(1)
    assert quadratic["probe/relaxation_mean"] == pytest.approx(float((norms / 4).mean()), rel=1e-5)
    assert quadratic["probe/relaxation_over_margin_mean"] == pytest.approx(2.5, rel=1e-5)
    cap = float(norms.median())
    linear = probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(0.1), pgd_steps=1,
                   multiplier=Growing(), relax=Linear(cap))
    violation = (emb - ref).pow(2).sum(1) - 0.1 * norms
    expected = torch.where(norms >= cap, violation.clamp_min(0), torch.zeros_like(violation))
    assert linear["probe/relaxation_mean"] == pytest.approx(float(expected.mean()), rel=1e-5, abs=1e-9)
    assert "probe/relaxation_mean" not in probe(encoder, reference, head, images, labels, eps=4 / 255,
                                                margin=NormMargin(0.1), pgd_steps=1, multiplier=Growing())
