"""`lore eval` on an encoder without a text tower: the linear probe is never fitted on the images it scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lore.data.images import build_dataset, split_disjoint
from lore.evaluation.config import EvalConfig
from lore.evaluation.run import linear_head_data, run_evaluation


def noise_folder(root, classes=("a", "b"), per_class=20, size=32, seed=0):
    """Pure-noise PNGs in class folders: no encoder can tell the classes apart on unseen images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_split_disjoint_parts_cover_the_dataset_once():
    data = torch.utils.data.TensorDataset(torch.arange(11))
    first, second = split_disjoint(data, 0.5, seed=3)
    assert set(first.indices).isdisjoint(second.indices)
    assert sorted(first.indices + second.indices) == list(range(11))
    assert len(first) == 6 and len(second) == 5
    with pytest.raises(ValueError, match="first_share"):
        split_disjoint(data, 1.0, seed=0)


def test_a_folder_used_whole_is_split_between_probe_and_scoring(tmp_path):
    folder = noise_folder(tmp_path / "noise")
    config = EvalConfig(model="timm:resnet10t", data=str(folder), image_size=32, attacks="", output=str(tmp_path / "o"))
    test_set = build_dataset(config.data, 32, split="test")
    head, scored, described = linear_head_data(config, 32, test_set)
    assert set(head.indices).isdisjoint(scored.indices) and len(head) + len(scored) == 40
    assert "disjoint" in described
    # the same folder named another way (a trailing slash) is still the same data
    config = EvalConfig(model="timm:resnet10t", data=str(folder), head_data=str(folder) + "/", image_size=32,
                        attacks="", output=str(tmp_path / "o"))
    head, scored, _ = linear_head_data(config, 32, test_set)
    assert set(head.indices).isdisjoint(scored.indices)


def test_a_random_encoder_on_noise_scores_chance_not_a_perfect_fit(tmp_path):
    """Fitted on the scored images, a 512-feature probe separates 40 noise images perfectly (accuracy 1.0, the
    defect); fitted on a disjoint half it can only guess."""
    torch.manual_seed(0)
    folder = noise_folder(tmp_path / "noise", per_class=30)
    report = run_evaluation(EvalConfig(model="timm:resnet10t", data=str(folder), image_size=32, attacks="",
                                       output=str(tmp_path / "out"), device="cpu"))
    assert report["n_samples"] == 30  # the scored half
    assert report["clean_accuracy"] < 0.85
    assert report["head"].startswith("linear probe") and "disjoint" in report["head"]


def test_eval_decodes_with_the_requested_number_of_threads(tmp_path, monkeypatch):
    from lore.evaluation import run as run_module

    pools = []
    original = run_module.probe_subset

    def recording(*args, workers_pool=None, **kwargs):
        pools.append(workers_pool)
        return original(*args, workers_pool=workers_pool, **kwargs)

    monkeypatch.setattr(run_module, "probe_subset", recording)
    folder = noise_folder(tmp_path / "noise", per_class=4)
    run_evaluation(EvalConfig(model="timm:resnet10t", data=str(folder), image_size=32, attacks="", workers=3,
                              output=str(tmp_path / "out"), device="cpu"))
    assert len(pools) == 2 and all(pool is not None and pool._max_workers == 3 for pool in pools)


def test_head_data_with_other_classes_is_refused(tmp_path):
    """Audit probe 10: --head-data with another class list printed "clean accuracy: 0.4000", exit 0."""
    scored = noise_folder(tmp_path / "scored", classes=("a", "b", "c"), per_class=4)
    other = noise_folder(tmp_path / "other", classes=("a", "b", "x"), per_class=4, seed=1)
    with pytest.raises(ValueError, match=r"have different classes \(3 vs 3; label 2 is 'x' vs 'c'\)"):
        run_evaluation(EvalConfig(model="digits-cnn", data=str(scored), head_data=str(other), image_size=32,
                                  attacks="", output=str(tmp_path / "out"), device="cpu"))


def test_head_data_is_refused_for_a_model_scored_zero_shot(tiny_clip_dir, tmp_path):
    """Audit: --head-data with a CLIP model was accepted and recorded although the zero-shot head ignores it."""
    scored = noise_folder(tmp_path / "scored", per_class=2)
    with pytest.raises(ValueError, match="head_data .* does not apply: .* has a text tower"):
        run_evaluation(EvalConfig(model=str(tiny_clip_dir), data=str(scored), head_data=str(scored), image_size=32,
                                  attacks="", output=str(tmp_path / "out"), device="cpu"))


def test_a_three_class_eval_report_names_the_skipped_attack_and_the_head(tmp_path):
    """report.md and report.json of a 3-class `lore eval` say that APGD-DLR-T did not run and why, and which
    head scored the images (its kind, data and size)."""
    torch.manual_seed(0)
    folder = noise_folder(tmp_path / "noise", classes=("a", "b", "c"), per_class=6)
    output = tmp_path / "out"
    report = run_evaluation(EvalConfig(model="timm:resnet10t", data=str(folder), image_size=32, attacks="apgd-ce,apgd-t",
                                       eps="8/255", n_iter=2, n_samples=9, output=str(output), device="cpu"))
    assert [s["attack"] for s in report["skipped"]] == ["apgd-t"]
    text = (output / "report.md").read_text()
    assert "skipped: apgd-t (APGD-DLR-T needs at least 4 classes" in text and "this classifier has 3" in text
    assert "head: linear probe (fitted on the clean features of 9 images" in text


def test_classes_scores_only_the_listed_folders(tmp_path):
    """`lore eval --classes` (ImageNet-100 from an ImageNet tree): only the listed class folders are scored, and
    the report records the list."""
    torch.manual_seed(0)
    folder = noise_folder(tmp_path / "noise", classes=("a", "b", "c"), per_class=10)
    listed = tmp_path / "classes.txt"
    listed.write_text("a\nc\n")
    report = run_evaluation(EvalConfig(model="timm:resnet10t", data=str(folder), classes=str(listed), image_size=32,
                                       attacks="", output=str(tmp_path / "out"), device="cpu"))
    assert report["n_samples"] == 10  # the scored half of the 20 images of a and c (15 of all 30 without --classes)
    assert report["config"]["classes"] == str(listed)
    with pytest.raises(ValueError, match="classes"):
        EvalConfig(benchmark="cifar10", data_root=str(tmp_path), classes=str(listed))
