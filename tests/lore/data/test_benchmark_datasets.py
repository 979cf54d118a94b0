"""The paper's benchmark datasets as `lore.data` reads them from their release layouts: labels, class names,
image orientation, safe parsing, and one-line errors for the layouts that would misalign labels."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark_standins import CIFAR10_NAMES, IMAGENET_WNIDS, STL10_NAMES, WRITERS, write_cifar10
from lore.data.benchmark import BenchmarkDataMissing, build_benchmark_dataset
from lore.data.images import as_float_pixels
from lore.data.zero_shot import PAPER_DATASETS, parse_benchmark, zero_shot_metadata


class _RunsCode:
    def __reduce__(self):
        return (eval, ("__import__('pathlib').Path('PWNED').touch()",))


def clip_benchmark_json(name: str) -> dict:
    import clip_benchmark

    return json.loads((Path(clip_benchmark.__file__).parent / "datasets" / name).read_text())


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_every_paper_dataset_loads_its_labels_and_class_names(all_standins, name):
    root, written = all_standins
    dataset = build_benchmark_dataset(name, root, 24)
    assert [dataset[i][1] for i in range(len(dataset))] == written[name]
    image, _, index = dataset[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.uint8 and index == 0  # decoded files stay 8-bit
    classnames, templates = zero_shot_metadata(name, root)
    assert list(dataset.classnames) == classnames and max(written[name]) < len(classnames)
    assert templates and all("{}" in t and "{c}" not in t for t in templates)


def test_class_names_come_from_the_sources_the_field_uses(all_standins):
    root, _ = all_standins
    names, templates = zero_shot_metadata("imagenet1k")
    assert names[0] == "tench" and len(names) == 1000 and len(templates) == 80
    reference_names, reference_templates = clip_benchmark_json("en_classnames.json"), clip_benchmark_json(
        "en_zeroshot_classification_templates.json")
    assert names == reference_names["imagenet1k"]  # open_clip's and CLIP_benchmark's agree
    assert templates == [t.replace("{c}", "{}") for t in reference_templates["imagenet1k"]]
    for name in ("caltech101", "eurosat", "flowers", "pcam", "pets"):
        assert zero_shot_metadata(name, root)[0] == reference_names[name]
    assert zero_shot_metadata("cifar10", root)[0] == CIFAR10_NAMES
    assert zero_shot_metadata("stl10", root)[0] == STL10_NAMES
    assert zero_shot_metadata("cifar100", root)[0][-1] == "aquarium fish"  # underscores read as spaces
    assert zero_shot_metadata("imagenet-r", root)[0] == [IMAGENET_WNIDS[w] for w in sorted(IMAGENET_WNIDS)]
    assert zero_shot_metadata("imagenet-r", root)[1] == templates  # ImageNet's templates, as CLIP_benchmark falls back
    with pytest.raises(ValueError, match="pass root"):
        zero_shot_metadata("cifar10")


def test_parse_benchmark_expands_paper_and_refuses_unknown_names():
    assert parse_benchmark("paper") == list(PAPER_DATASETS) and len(PAPER_DATASETS) == 14
    assert parse_benchmark("stl10, cifar10,stl10") == ["stl10", "cifar10"]
    with pytest.raises(ValueError, match="imagenet"):
        parse_benchmark("cifar10,imagenet")


def test_binary_formats_keep_image_orientation(tmp_path):
    """A picture bright in its top rows and left columns must load the same way up (no transposed axes)."""
    picture = np.zeros((3, 96, 96), dtype=np.uint8)
    picture[:, :10, :] = 255  # top rows
    picture[0, :, :5] = 200  # left columns, red only
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    picture.transpose(0, 2, 1)[None].tofile(folder / "test_X.bin")  # the release: per channel, column-major
    np.array([3], dtype=np.uint8).tofile(folder / "test_y.bin")
    (folder / "class_names.txt").write_text("\n".join(STL10_NAMES))
    image, label, _ = build_benchmark_dataset("stl10", tmp_path, 96)[0]
    image = as_float_pixels(image)
    assert label == 2
    assert image[1, :10].min() == 1 and image[1, 20:].max() == 0 and image[0, 20:, :5].min() > 0.7 and image[1, 20:, :5].max() == 0

    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    small = np.zeros((3, 32, 32), dtype=np.uint8)
    small[:, :4, :] = 255
    with open(cifar / "test_batch", "wb") as f:
        pickle.dump({"data": small.reshape(1, -1), "labels": [1]}, f)  # the release: R plane, G plane, B plane, row-major
    with open(cifar / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_NAMES}, f)
    image, label, _ = build_benchmark_dataset("cifar10", tmp_path, 32)[0]
    image = as_float_pixels(image)
    assert label == 1 and image[:, :4].min() == 1 and image[:, 8:].max() == 0


def test_cifar_files_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": _RunsCode()}, f)
    with pytest.raises(ValueError, match="refusing to load builtins.eval"):
        zero_shot_metadata("cifar10", tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_folder_datasets_refuse_layouts_that_would_misalign_labels(tmp_path):
    from benchmark_standins import write_class_folders

    write_class_folders(tmp_path / "caltech101" / "101_ObjectCategories", [f"c{i}" for i in range(101)], per_class=1)
    with pytest.raises(BenchmarkDataMissing, match="not the release's.*unexpected \\['c0'"):
        build_benchmark_dataset("caltech101", tmp_path, 16)
    write_class_folders(tmp_path / "imagenet-r", ["n01440764", "not_a_wnid"], per_class=1)
    with pytest.raises(BenchmarkDataMissing, match="WordNet ids.*not_a_wnid"):
        build_benchmark_dataset("imagenet-r", tmp_path, 16)


def test_both_root_layouts_are_found(tmp_path):
    """One shared root (CLIP_benchmark's --dataset_root) or one folder per dataset name."""
    write_cifar10(tmp_path / "cifar10")
    assert len(build_benchmark_dataset("cifar10", tmp_path, 16)) == 24


def test_standin_writers_cover_the_paper():
    assert set(WRITERS) == set(PAPER_DATASETS)


def test_a_misnamed_eurosat_folder_is_refused_by_name(tmp_path):
    """Ten folders, one misnamed (Forest -> Aaa): the count is right, every label after it would shift."""
    from benchmark_standins import EUROSAT_FOLDERS, write_class_folders

    write_class_folders(tmp_path / "eurosat" / "2750", ["Aaa" if f == "Forest" else f for f in EUROSAT_FOLDERS])
    with pytest.raises(BenchmarkDataMissing, match=r"unexpected \['Aaa'\], missing \['Forest'\]"):
        build_benchmark_dataset("eurosat", tmp_path, 16)


def test_links_that_would_multiply_or_mislabel_images_are_refused(tmp_path):
    import os

    from benchmark_standins import EUROSAT_FOLDERS, write_class_folders

    root = tmp_path / "eurosat" / "2750"
    write_class_folders(root, EUROSAT_FOLDERS)
    os.symlink(".", root / "Forest" / "loop")  # a loop: ImageFolder would read Forest's images over and over
    with pytest.raises(BenchmarkDataMissing, match="Forest/loop is a link to the folder"):
        build_benchmark_dataset("eurosat", tmp_path, 16)
    os.remove(root / "Forest" / "loop")
    image = next((root / "River").iterdir())
    os.symlink(image, root / "SeaLake" / "from-river.jpg")  # one image under two labels
    with pytest.raises(BenchmarkDataMissing, match="is the same file as"):
        build_benchmark_dataset("eurosat", tmp_path, 16)
    os.remove(root / "SeaLake" / "from-river.jpg")
    os.link(image, root / "SeaLake" / "hard-from-river.jpg")  # a hard link: one inode, two names, two labels
    with pytest.raises(BenchmarkDataMissing, match="is a hard link to"):
        build_benchmark_dataset("eurosat", tmp_path, 16)
    os.remove(root / "SeaLake" / "hard-from-river.jpg")
    elsewhere = tmp_path / "elsewhere.jpg"
    os.replace(image, elsewhere)
    os.symlink(elsewhere, image)  # a link to a file outside, reached once: fine
    assert len(build_benchmark_dataset("eurosat", tmp_path, 16)) == sum(1 for _ in root.rglob("*.jpg"))


def test_negative_labels_in_a_release_file_are_named_not_an_index_error(tmp_path):
    import pickle as pickle_module

    write_cifar10(tmp_path)
    batch_file = tmp_path / "cifar-10-batches-py" / "test_batch"
    with open(batch_file, "rb") as f:
        batch = pickle_module.load(f)
    batch["labels"][3] = -1
    with open(batch_file, "wb") as f:
        pickle_module.dump(batch, f)
    with pytest.raises(ValueError, match="labels run from -1 to 9.*damaged label file"):
        build_benchmark_dataset("cifar10", tmp_path, 16)


def test_an_empty_split_is_named_not_a_stack_error(tmp_path):
    import pickle as pickle_module

    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle_module.dump({"labels": [], "data": np.zeros((0, 3072), dtype=np.uint8)}, f)
    with pytest.raises(BenchmarkDataMissing, match="holds no images"):
        build_benchmark_dataset("cifar10", tmp_path, 16)
