"""RobustStep: how many attacks, encoder forwards and updates one batch costs, per method, as each method's
authors trained it (FARE and TeCoA: one update per adversarial batch) or with K updates (the equal-updates
control, and the constrained methods)."""

from __future__ import annotations

import pytest
import torch

import lore
import copy


from digit_batches import batch_of
from lore import RobustStep, ZeroShotHead, fare, tecoa
from lore.reference import FrozenReference


class Counted:
    """Counts the encoder's forwards (its own and phi_0's, told apart) and the optimizer's steps."""

    def __init__(self, encoder, reference, optimizer):
        self.forwards = self.reference_forwards = self.updates = 0
        encoder.register_forward_hook(lambda *_: self._add("forwards"))
        reference.register_forward_hook(lambda *_: self._add("reference_forwards"))
        optimizer.register_step_post_hook(lambda *_: self._add("updates"))

    def _add(self, name):
        setattr(self, name, getattr(self, name) + 1)

    @property
    def encoder_forwards(self) -> int:
        """The trained encoder's forwards (phi_0's run through the same module, by `functional_call`)."""
        return self.forwards - self.reference_forwards


def _count(pretrained_encoder, digits_split, method, **step):
    import copy

    encoder = copy.deepcopy(pretrained_encoder[0])
    reference = FrozenReference(encoder)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.01)
    counted = Counted(encoder, reference, optimizer)
    train, _ = digits_split
    head = ZeroShotHead(torch.randn(10, 32, generator=torch.Generator().manual_seed(0)), scale=20.0)
    robust = RobustStep(encoder, method, optimizer, eps=8 / 255, reference=reference, head=head, pgd_steps=10, **step)
    robust(train.images[:8], labels=train.labels[:8], generator=torch.Generator().manual_seed(0))
    return counted, robust


@pytest.mark.parametrize("factory", [lore.fare, lore.tecoa])
def test_fare_and_tecoa_take_their_authors_one_update_per_adversarial_batch(pretrained_encoder, digits_split, factory):
    """Every method took K = 5 updates on each adversarial batch, and FARE ran a clean forward it only logged:
    17 encoder forwards per batch. As RobustVLM trains FARE: one attack (PGD-10: 10 forwards), one update (1)."""
    counted, step = _count(pretrained_encoder, digits_split, factory())
    assert step.primal_steps == 1 and counted.updates == 1
    assert counted.encoder_forwards == 11 and counted.reference_forwards == 1


@pytest.mark.parametrize("factory", [lore.fare, lore.tecoa])
def test_the_equal_updates_control_takes_k(pretrained_encoder, digits_split, factory):
    counted, step = _count(pretrained_encoder, digits_split, factory(), primal_steps=5)
    assert step.primal_steps == 5 and counted.updates == 5
    assert counted.encoder_forwards == 10 + 5 and counted.reference_forwards == 1


def test_constrained_methods_keep_k_by_default(pretrained_encoder, digits_split):
    counted, step = _count(pretrained_encoder, digits_split, lore.lore(0.1, hidden=16))
    assert step.primal_steps == 5 and counted.updates == 5


def test_the_clean_distance_of_an_unconstrained_method_is_measured_only_when_asked(pretrained_encoder, digits_split):
    _, step = _count(pretrained_encoder, digits_split, lore.fare())
    counted, measuring = _count(pretrained_encoder, digits_split, lore.fare(), measure_clean=True)
    assert counted.encoder_forwards == 12  # the extra no-grad clean forward that only logs
    assert measuring.measure_clean and not step.measure_clean


# ---- Algorithm 1's step: passes, accumulation, precision, the dual's features, what is logged


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


def test_supervised_methods_need_a_head_and_labels(pretrained_encoder):
    encoder, _ = pretrained_encoder
    with pytest.raises(ValueError, match="pass head=ZeroShotHead"):
        RobustStep(encoder, tecoa(), torch.optim.SGD(encoder.parameters(), lr=0.1), eps=0.1)
    head = ZeroShotHead(torch.randn(10, 32))
    step = RobustStep(encoder, tecoa(), torch.optim.SGD(encoder.parameters(), lr=0.1), eps=0.1, head=head)
    with pytest.raises(ValueError, match="pass labels"):
        step(torch.rand(2, 3, 16, 16))


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
