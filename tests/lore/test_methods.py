"""The six methods as specifications, and Algorithm 1's training step."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import lore
from constrained import Constraint, FixedMargin, l2
from lore import Batch, Method, RobustStep, ZeroShotHead, embedding_distance, fare, naive, tecoa, tecoa_kl, tecoa_l2


def test_the_six_methods_are_importable_and_distinct():
    names = {factory().name for factory in (lore.fare, lore.naive, lore.lore, lore.tecoa, lore.tecoa_l2, lore.tecoa_kl)}
    assert names == {"fare", "naive", "lore", "tecoa", "tecoa-l2", "tecoa-kl"}
    assert set(lore.METHODS) == names


def batch_of(train, n=16, seed=0):
    idx = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(seed))[:n]
    return train.images[idx], train.labels[idx]


def prototype_head(encoder, train):
    """A zero-shot-style head from class-mean embeddings (the digits model has no text tower here)."""
    with torch.no_grad():
        emb = encoder(train.images[:500])
    return ZeroShotHead(torch.stack([emb[train.labels[:500] == c].mean(0) for c in range(10)]), scale=20.0)


def test_fare_step_equals_lore_step_when_lambda_is_zero(pretrained_encoder, digits_split):
    train, _ = digits_split
    images, _ = batch_of(train)
    encoder_a, _ = pretrained_encoder
    encoder_b = copy.deepcopy(encoder_a)
    runs = []
    for encoder, method in ((encoder_a, fare()), (encoder_b, lore.lore(0.1, dual="scalar", init=0.0, dual_lr=0.0))):
        step = RobustStep(encoder, method, torch.optim.SGD(encoder.parameters(), lr=0.1), eps=8 / 255, primal_steps=3)
        runs.append(step(images, generator=torch.Generator().manual_seed(0)))
    for p, q in zip(encoder_a.parameters(), encoder_b.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-5)  # fused [adv; clean] batches round differently
    assert runs[0].robust_loss == pytest.approx(runs[1].robust_loss, rel=1e-5)
    assert runs[1].constraint.multiplier_max == 0.0


def test_tecoa_loss_matches_a_hand_computation():
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    text = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # unnormalised on purpose
    labels = torch.tensor([1, 1])
    batch = Batch(images=torch.zeros(2, 3, 1, 1), reference=embeddings, labels=labels, head=ZeroShotHead(text, scale=10.0))
    # cosines: sample 0 -> (1, 0), sample 1 -> (0.6, 0.8); logits = 10 * cos
    expected = [
        -(10 * 0.0) + torch.logsumexp(torch.tensor([10.0, 0.0]), 0).item(),
        -(10 * 0.8) + torch.logsumexp(torch.tensor([6.0, 8.0]), 0).item(),
    ]
    assert tecoa().robust_loss(embeddings, batch).tolist() == pytest.approx(expected, rel=1e-5)


def test_algorithm_1_attacks_once_and_takes_k_primal_steps_per_dual_step(pretrained_encoder, digits_split):
    train, _ = digits_split
    images, _ = batch_of(train)
    encoder, _ = pretrained_encoder
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    forwards = []
    encoder.backbone.register_forward_hook(lambda m, i, o: forwards.append(i[0].shape[0]))
    step = RobustStep(encoder, lore.lore(0.1, hidden=16), optimizer, eps=8 / 255, pgd_steps=4, primal_steps=5)
    reference_calls = []
    original = step.reference
    step.reference = lambda x: reference_calls.append(1) or original(x)
    out = step(images)
    # the reference once, 4 attack forwards of B, then 5 fused [adv; clean] forwards of 2B
    assert forwards == [16] + [16] * 4 + [32] * 5
    assert len(reference_calls) == 1
    assert step.primal_dual.primal_steps == 5 and step.primal_dual.dual_steps == 1
    assert {"robust_loss", "clean_distance", "clean/satisfied_fraction", "clean/multiplier_mean"} <= set(out.as_dict())


@pytest.mark.parametrize("accumulation", [1, 2])
def test_fused_and_sequential_passes_make_the_same_update(pretrained_encoder, digits_split, accumulation):
    """The memory-lean step (adversarial backward first, then the clean pass) equals the fused one."""
    train, _ = digits_split
    images, _ = batch_of(train)
    encoder_a, _ = pretrained_encoder
    encoder_b = copy.deepcopy(encoder_a)
    start = copy.deepcopy(encoder_a)
    outs, duals = [], []
    for encoder, passes in ((encoder_a, "fused"), (encoder_b, "sequential")):
        torch.manual_seed(0)
        step = RobustStep(encoder, lore.lore(0.1, hidden=16), torch.optim.SGD(encoder.parameters(), lr=0.05),
                          eps=8 / 255, primal_steps=2, passes=passes, accumulation_steps=accumulation)
        for seed in range(2):
            outs.append(step(images, generator=torch.Generator().manual_seed(seed)))
        duals.append(step.primal_dual.multiplier("clean").state_dict())
    # Same math, batched differently ([adv; clean] vs two passes): float32 reassociation, amplified by 4 SGD
    # steps at lr 0.05, leaves up to 1.7e-5 of a tensor's movement between them on one thread (7e-7 on two);
    # a real difference (a dropped or mis-weighted clean term) is of the order of the movement itself.
    for p, q, p0 in zip(encoder_a.parameters(), encoder_b.parameters(), start.parameters()):
        assert (p - q).abs().max() <= 1e-3 * (p - p0).abs().max()
    for key in duals[0]:
        assert torch.allclose(duals[0][key], duals[1][key], atol=1e-6)
    for fused, sequential in ((outs[0], outs[2]), (outs[1], outs[3])):
        for key in ("robust_loss", "clean/violation_mean", "clean/multiplier_mean"):
            assert fused.as_dict()[key] == pytest.approx(sequential.as_dict()[key], rel=1e-4, abs=1e-7)
    with pytest.raises(ValueError, match="passes must be one of"):
        RobustStep(encoder_a, lore.lore(0.1), torch.optim.SGD(encoder_a.parameters(), lr=0.1), eps=0.1, passes="twice")


@pytest.mark.parametrize("factory", [naive, tecoa, tecoa_l2, tecoa_kl])
def test_every_method_trains_on_digits(factory, pretrained_encoder, digits_split):
    """Every step's numbers are finite, the encoder moves, a constrained method's multiplier moves off its start
    and naive's weight stays the fixed weight. (Its robust loss need not fall within a few steps: each step
    attacks the updated encoder afresh, and on this batch it rose for naive and TeCoA+l2 at lr 3e-4.)"""
    train, _ = digits_split
    encoder, _ = pretrained_encoder
    start = copy.deepcopy(encoder)
    head = prototype_head(encoder, train)
    kwargs = {"hidden": 16} if factory in (tecoa_l2, tecoa_kl) else {}
    method = factory(**kwargs)
    step = RobustStep(encoder, method, torch.optim.Adam(encoder.parameters(), lr=1e-3), eps=8 / 255,
                      head=head, pgd_steps=3, primal_steps=2)
    images, labels = batch_of(train, n=32, seed=0)
    outs = [step(images, labels=labels) for _ in range(6)]
    assert all(math.isfinite(v) for out in outs for v in out.as_dict().values())
    assert any(not torch.equal(p, q) for p, q in zip(encoder.parameters(), start.parameters()))
    if method.constraint is None:
        return
    first, last = outs[0].as_dict()["clean/multiplier_mean"], outs[-1].as_dict()["clean/multiplier_mean"]
    assert 0.0 <= outs[-1].constraint.satisfied_fraction <= 1.0
    if factory is naive:
        assert first == last == pytest.approx(method.formulation.weight)
    else:
        assert last != pytest.approx(first, rel=1e-6, abs=1e-9)


def test_supervised_methods_need_a_head_and_labels(pretrained_encoder):
    encoder, _ = pretrained_encoder
    with pytest.raises(ValueError, match="pass head=ZeroShotHead"):
        RobustStep(encoder, tecoa(), torch.optim.SGD(encoder.parameters(), lr=0.1), eps=0.1)
    head = ZeroShotHead(torch.randn(10, 32))
    step = RobustStep(encoder, tecoa(), torch.optim.SGD(encoder.parameters(), lr=0.1), eps=0.1, head=head)
    with pytest.raises(ValueError, match="pass labels"):
        step(torch.rand(2, 3, 16, 16))


def test_a_seventh_method_needs_no_library_change(pretrained_encoder, digits_split):
    """FARE's objective with an l2 (not squared) proximity bound, a fixed tolerance and a scalar lambda."""
    from constrained import ScalarMultiplier

    my_method = Method(
        name="fare-l2-ball",
        robust_loss=embedding_distance,
        constraint=Constraint(d=l2, margin=FixedMargin(0.5), name="clean"),
        multiplier=lambda dim: ScalarMultiplier(init=1.0),
    )
    train, _ = digits_split
    encoder, _ = pretrained_encoder
    step = RobustStep(encoder, my_method, torch.optim.Adam(encoder.parameters(), lr=1e-3), eps=8 / 255, pgd_steps=2)
    out = step(batch_of(train)[0])
    assert out.constraint_name == "clean" and out.constraint is not None and "clean/violation_mean" in out.as_dict()


def test_tecoa_kl_constrains_zero_shot_predictions(pretrained_encoder, digits_split):
    """The KL constraint compares predictive distributions, so it is zero at the start."""
    train, _ = digits_split
    encoder, _ = pretrained_encoder
    head = prototype_head(encoder, train)
    images, labels = batch_of(train)
    method = tecoa_kl(0.1, hidden=16)
    with torch.no_grad():
        emb = encoder(images)
        batch = Batch(images, emb, labels, head)
        violation = method.constraint.violation(method.view(emb, batch), method.view(emb, batch))
        entropy = -(F.softmax(head(emb), 1) * F.log_softmax(head(emb), 1)).sum(1)
    assert torch.allclose(violation, -0.1 * entropy, atol=1e-5)


def test_bf16_autocast_step_runs_and_keeps_fp32_weights(pretrained_encoder, digits_split):
    train, _ = digits_split
    encoder, _ = pretrained_encoder
    step = RobustStep(encoder, lore.lore(0.1, hidden=16), torch.optim.Adam(encoder.parameters(), lr=1e-3),
                      eps=8 / 255, pgd_steps=2, primal_steps=2, autocast_dtype=torch.bfloat16)
    out = step(batch_of(train)[0])
    assert all(torch.isfinite(torch.tensor(v)) for v in out.as_dict().values())
    assert all(p.dtype == torch.float32 for p in encoder.parameters())


@pytest.mark.parametrize("method", ["fare", "lore"])
def test_gradient_accumulation_gives_the_same_update(method, pretrained_encoder, digits_split):
    train, _ = digits_split
    images, _ = batch_of(train)
    encoder_a, _ = pretrained_encoder
    encoder_b = copy.deepcopy(encoder_a)
    outs = []
    for encoder, steps in ((encoder_a, 1), (encoder_b, 2)):
        torch.manual_seed(0)
        spec = lore.fare() if method == "fare" else lore.lore(0.1, hidden=16, dual_lr=0.5)
        step = RobustStep(encoder, spec, torch.optim.SGD(encoder.parameters(), lr=0.05), eps=8 / 255, pgd_steps=3,
                          primal_steps=2, accumulation_steps=steps)
        outs.append(step(images, initial_delta=torch.zeros_like(images)))
    for p, q in zip(encoder_a.parameters(), encoder_b.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-5)
    assert outs[0].robust_loss == pytest.approx(outs[1].robust_loss, rel=1e-4)
    with pytest.raises(ValueError, match="not divisible by accumulation_steps=3"):
        RobustStep(encoder_a, lore.fare(), torch.optim.SGD(encoder_a.parameters(), lr=0.1), eps=0.1,
                   accumulation_steps=3)(images)


@pytest.mark.parametrize("labels", [torch.tensor([1, -100]), torch.tensor([0, 2])])
def test_tecoa_refuses_ignored_or_out_of_range_labels_instead_of_a_zero_loss(labels):
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    head = ZeroShotHead(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), scale=10.0)
    batch = Batch(images=torch.zeros(2, 3, 1, 1), reference=embeddings, labels=labels, head=head)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        tecoa().robust_loss(embeddings, batch)


def test_a_standardizing_multiplier_is_fitted_on_the_first_batch_once_unless_fitted_before(pretrained_encoder,
                                                                                           digits_split):
    train, _ = digits_split
    images, _ = batch_of(train)
    encoder, _ = pretrained_encoder
    standardized = lore.lore(0.1, hidden=16, features="standardized")
    step = RobustStep(encoder, standardized, torch.optim.SGD(encoder.parameters(), lr=0.0), eps=8 / 255,
                      pgd_steps=1, primal_steps=1)
    step(images)
    with torch.no_grad():
        expected = step.reference(images).float().double().mean(0)
    multiplier = step.multiplier
    assert torch.allclose(multiplier.feature_mean.double(), expected, atol=1e-5)
    step(train.images[100:116])  # a later batch changes nothing
    assert torch.allclose(multiplier.feature_mean.double(), expected, atol=1e-5)
    fresh = RobustStep(copy.deepcopy(encoder), standardized,
                       torch.optim.SGD(encoder.parameters(), lr=0.0), eps=8 / 255, pgd_steps=1, primal_steps=1)
    fresh.fit_dual_features(train.images[:200])
    fitted = fresh.multiplier.feature_mean.clone()
    fresh(images)  # explicitly fitted statistics are kept
    assert torch.equal(fresh.multiplier.feature_mean, fitted)


@pytest.mark.parametrize("passes", ["fused", "sequential"])
def test_the_logged_robust_loss_in_alternating_mode_is_the_one_the_update_used(pretrained_encoder, digits_split, passes):
    """Alternating mode re-runs the closures after the update for the dual step; those evaluations must not
    enter the logged robust loss. With K = 1 both modes take the same primal update from the same state, so
    the robust loss that update used is the same number."""
    train, _ = digits_split
    images, _ = batch_of(train)
    encoder_a, _ = pretrained_encoder
    encoder_b = copy.deepcopy(encoder_a)
    outs = []
    for encoder, mode in ((encoder_a, "simultaneous"), (encoder_b, "alternating")):
        step = RobustStep(encoder, lore.lore(0.1, hidden=16), torch.optim.SGD(encoder.parameters(), lr=0.5),
                          eps=8 / 255, primal_steps=1, mode=mode, passes=passes)
        outs.append(step(images, generator=torch.Generator().manual_seed(0)))
    for p, q in zip(encoder_a.parameters(), encoder_b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)  # the same primal update
    assert outs[1].robust_loss == pytest.approx(outs[0].robust_loss, rel=1e-6)
    assert outs[1].clean_distance == pytest.approx(outs[0].clean_distance, rel=1e-6)
