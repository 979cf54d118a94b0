"""PGD: stays in the ball and in [0, 1], ascends, leaves the model alone, is reproducible."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from lore import pgd


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Dropout(0.0), torch.nn.Flatten(), torch.nn.LazyLinear(5)
    )


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 4),
    size=st.integers(2, 8),
    eps=st.sampled_from([0.0, 1 / 255, 4 / 255, 16 / 255, 0.5]),
    seed=st.integers(0, 2**16),
    steps=st.integers(0, 5),
)
def test_delta_stays_in_the_ball_and_the_pixel_range(batch, size, eps, seed, steps):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g)
    images[:, :, 0, 0] = 0.0  # corners of the pixel range are where clamping matters
    images[:, :, -1, -1] = 1.0
    weights = torch.randn(3, size, size, generator=g)
    delta = pgd(lambda x: (x * weights).flatten(1).sum(1), images, eps=eps, steps=steps, generator=g)
    assert delta.shape == images.shape
    assert delta.abs().max() <= eps + 1e-6
    adv = images + delta
    assert adv.min() >= 0 and adv.max() <= 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), eps=st.sampled_from([2 / 255, 8 / 255, 0.1]))
def test_linear_objective_reaches_the_box_maximum(seed, eps):
    """For f(x) = <w, x>, 10 sign steps of eps/4 reach the best corner from any start, so f(x + delta) >= f(x)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(3, 3, 4, 4, generator=g)
    w = torch.randn(3, 4, 4, generator=g)
    f = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    delta = pgd(f, images, eps=eps, generator=g)
    best = ((images + eps * w.sign()).clamp(0, 1)) - images
    assert torch.allclose(delta, best, atol=1e-6)
    assert (f(images + delta) >= f(images) - 1e-6).all()


def test_matches_a_plain_reference_loop():
    model = tiny_model()
    images = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3])
    objective = lambda x: torch.nn.functional.cross_entropy(model(x), labels, reduction="none")  # noqa: E731
    eps, alpha = 8 / 255, 2 / 255
    delta = pgd(objective, images, eps=eps, step_size=alpha, steps=7, random_start=False)

    x_adv = images.clone()
    for _ in range(7):
        x_adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x_adv), labels, reduction="sum")
        grad = torch.autograd.grad(loss, x_adv)[0]
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, images - eps), images + eps).clamp(0, 1)
    assert torch.allclose(images + delta, x_adv, atol=1e-6)


def test_attack_leaves_the_model_untouched():
    model = tiny_model()
    images = torch.rand(2, 3, 5, 5)
    model(images).sum().backward()  # the model has gradients already
    model.train()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    grads = {k: v.grad.clone() for k, v in model.named_parameters()}
    pgd(lambda x: model(x).logsumexp(1), images, eps=8 / 255)
    assert model.training
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k]) and torch.equal(v.grad, grads[k])
    model.eval()
    pgd(lambda x: model(x).logsumexp(1), images, eps=8 / 255)
    assert not model.training


def test_same_generator_state_gives_the_same_delta():
    model = tiny_model()
    images = torch.rand(2, 3, 5, 5)
    f = lambda x: model(x).logsumexp(1)  # noqa: E731
    a = pgd(f, images, eps=8 / 255, generator=torch.Generator().manual_seed(7))
    b = pgd(f, images, eps=8 / 255, generator=torch.Generator().manual_seed(7))
    c = pgd(f, images, eps=8 / 255, generator=torch.Generator().manual_seed(8), steps=0)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_works_under_autocast():
    model = tiny_model()
    images = torch.rand(2, 3, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        delta = pgd(lambda x: model(x).float().logsumexp(1), images, eps=4 / 255)
    assert delta.dtype == torch.float32 and delta.abs().max() <= 4 / 255 + 1e-6


def test_bad_input_is_named():
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="eps must be finite and >= 0, got -0.1"):
        pgd(lambda x: x.sum((1, 2, 3)), images, eps=-0.1)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        pgd(lambda x: x.sum(1), torch.rand(2, 4), eps=0.1)
    with pytest.raises(ValueError, match=r"objective must return shape \[B\]=\[2\], got \(\)"):
        pgd(lambda x: x.sum(), images, eps=0.1)


@pytest.mark.parametrize("scale, shift, hint", [(255.0, 0.0, "divide by 255"), (2.0, -1.0, "undo the normalisation")])
def test_pgd_refuses_images_outside_the_unit_pixel_range(scale, shift, hint):
    images = torch.rand(2, 3, 4, 4) * scale + shift
    model = tiny_model()
    with pytest.raises(ValueError, match=f"pixels in \\[0, 1\\].*{hint}"):
        pgd(lambda x: model(x).sum(1), images, eps=4 / 255)
