"""The paper's benchmark, offline: stand-ins of all 14 datasets in their release formats, metadata, the resumable runner."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lore.data.images import as_float_pixels

from lore.cli import main as lore_main
from lore.evaluation import benchmark as benchmark_module
from lore.evaluation import head_cache
from lore.evaluation.benchmark import run_benchmark
from lore.evaluation.head_cache import cached_class_embeddings
from lore.data.benchmark import BenchmarkDataMissing, build_benchmark_dataset
from lore.evaluation.suite import EvalSettings
from lore.data.zero_shot import PAPER_DATASETS, parse_benchmark, zero_shot_metadata

from standins import CIFAR10_NAMES, IMAGENET_WNIDS, STL10_NAMES, WRITERS, write_all, write_cifar10, write_stl10

FAST = EvalSettings(eps=(1 / 255, 4 / 255), n_iter=3, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def all_standins(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark-data")
    return root, write_all(root)


@pytest.fixture
def two_datasets(tmp_path):
    root = tmp_path / "data"
    write_cifar10(root, 20)
    write_stl10(root, 20)
    return root


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


class _RunsCode:
    def __reduce__(self):
        return (eval, ("__import__('pathlib').Path('PWNED').touch()",))


def test_cifar_files_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": _RunsCode()}, f)
    with pytest.raises(ValueError, match="refusing to load builtins.eval"):
        zero_shot_metadata("cifar10", tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_missing_datasets_name_their_layout_all_at_once(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(BenchmarkDataMissing, match="stl10_binary/.*test_X.bin.*Nothing is downloaded"):
        build_benchmark_dataset("stl10", tmp_path, 32)
    with pytest.raises(FileNotFoundError) as caught:
        benchmark_module.check_datasets_present(["cifar10", "stl10", "dtd", "flowers"], tmp_path)
    message = str(caught.value)
    assert "3 of 4" in message and "stl10" in message and "dtd/dtd" in message and "flowers-102" in message
    assert "cifar10:" not in message


def test_folder_datasets_refuse_layouts_that_would_misalign_labels(tmp_path):
    from standins import write_class_folders

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


def test_text_embeddings_are_computed_once_per_text_tower(tiny_clip_dir, tmp_path, monkeypatch):
    import open_clip

    clip = open_clip.create_model(f"local-dir:{tiny_clip_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tiny_clip_dir}")
    first = cached_class_embeddings(clip, tokenizer, ["cat", "dog"], ["a photo of a {}."], tmp_path)
    calls = []
    monkeypatch.setattr(head_cache, "class_text_embeddings", lambda *a: calls.append(a))
    again = cached_class_embeddings(clip, tokenizer, ["cat", "dog"], ["a photo of a {}."], tmp_path)
    assert torch.equal(first, again) and not calls
    with torch.no_grad():  # a fine-tuned vision tower shares the text embeddings ...
        clip.visual.conv1.weight.add_(1.0)
    del clip._lore_text_fingerprint
    cached_class_embeddings(clip, tokenizer, ["cat", "dog"], ["a photo of a {}."], tmp_path)
    assert not calls
    with torch.no_grad():  # ... another text tower does not
        clip.token_embedding.weight.add_(1.0)
    del clip._lore_text_fingerprint
    monkeypatch.undo()
    changed = cached_class_embeddings(clip, tokenizer, ["cat", "dog"], ["a photo of a {}."], tmp_path)
    assert not torch.allclose(changed, first)


def test_cli_benchmark_writes_the_table3_report(tiny_clip_dir, two_datasets, tmp_path, capsys):
    out = tmp_path / "out"
    code = lore_main(["eval", "--model", str(tiny_clip_dir), "--benchmark", "cifar10,stl10", "--data-root", str(two_datasets),
                      "--eps", "1/255,4/255", "--samples", "12", "--n-iter", "3", "--out", str(out), "--device", "cpu",
                      "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete" and report["pending"] == []
    assert set(report["datasets"]) == {"cifar10", "stl10"}
    assert report["provenance"]["code"]["package"] and report["provenance"]["device"] == "cpu"
    assert len({r["weights_sha256"] for r in report["datasets"].values()}) == 1  # one model, hashed
    for result in report["datasets"].values():
        assert result["samples"] == 12 and set(result["robust"]) == {"1/255", "4/255"} and 0 <= result["clean"] <= 1
        assert result["attacks"] == ["apgd-ce+apgd-t"] and result["head"] == "zero-shot"
        assert result["robust"]["4/255"] <= result["robust"]["1/255"] <= result["clean"]
    average = report["average_zero_shot"]
    assert average["datasets"] == ["cifar10", "stl10"]
    assert average["clean"] == pytest.approx(np.mean([r["clean"] for r in report["datasets"].values()]))
    table = (out / "report.md").read_text()
    assert "| Eval. | Vision encoder | CIFAR10 | STL-10 | Average zero-shot |" in table
    assert (out / "benchmark.png").stat().st_size > 0
    assert "CIFAR10" in capsys.readouterr().out


def test_imagenet_is_not_in_the_zero_shot_average(tiny_clip_dir, all_standins, tmp_path):
    root, _ = all_standins
    report = run_benchmark([str(tiny_clip_dir)], ["imagenet1k", "pcam"], root, tmp_path / "out", settings=FAST, samples=8,
                           cache_dir=str(tmp_path / "cache"), device="cpu")
    assert report["average_zero_shot"]["datasets"] == ["pcam"]
    assert report["average_zero_shot"]["clean"] == report["datasets"]["pcam"]["clean"]
    assert report["datasets"]["pcam"]["attacks"] == ["apgd-ce"]  # 2 classes: no APGD-DLR-T, and no label claims it
    assert "ImageNet, PCAM: fewer than 4 classes, so APGD-CE only" in (tmp_path / "out" / "report.md").read_text()


def test_a_killed_benchmark_resumes_without_recomputing_finished_datasets(tiny_clip_dir, two_datasets, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = benchmark_module.evaluate_dataset
    calls = []

    def dies_on_stl10(built, prepared, **kwargs):
        calls.append(prepared.name)
        if prepared.name == "stl10":
            raise KeyboardInterrupt  # the job is killed while attacking the second dataset
        return real(built, prepared, **kwargs)

    monkeypatch.setattr(benchmark_module, "evaluate_dataset", dies_on_stl10)
    kwargs = dict(settings=FAST, samples=10, cache_dir=str(tmp_path / "cache"), device="cpu")
    with pytest.raises(KeyboardInterrupt):
        run_benchmark([str(tiny_clip_dir)], ["cifar10", "stl10"], two_datasets, out, **kwargs)
    finished = out / "models" / tiny_clip_dir.name / "cifar10.json"
    stamp = finished.stat().st_mtime_ns
    partial = json.loads((out / "report.json").read_text())
    assert partial["status"] == "incomplete" and partial["pending"] == ["stl10"] and list(partial["datasets"]) == ["cifar10"]
    assert "Incomplete" in (out / "report.md").read_text()

    monkeypatch.setattr(benchmark_module, "evaluate_dataset",
                        lambda built, prepared, **k: (calls.append(prepared.name), real(built, prepared, **k))[1])
    report = run_benchmark([str(tiny_clip_dir)], ["cifar10", "stl10"], two_datasets, out, **kwargs)
    assert calls == ["cifar10", "stl10", "stl10"] and finished.stat().st_mtime_ns == stamp
    assert report["status"] == "complete" and set(report["datasets"]) == {"cifar10", "stl10"}

    with pytest.raises(ValueError, match="other settings.*samples: stored 10 vs now 11"):
        run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **{**kwargs, "samples": 11})


def test_several_models_report_differences_to_the_baseline(tiny_clip_dir, two_datasets, tmp_path):
    import shutil

    other = tmp_path / "other-clip"
    shutil.copytree(tiny_clip_dir, other)
    report = run_benchmark([str(tiny_clip_dir), str(other)], ["cifar10"], two_datasets, tmp_path / "out", settings=FAST,
                           samples=8, baseline="other-clip", cache_dir=str(tmp_path / "cache"), device="cpu")
    assert report["baseline"] == "other-clip" and set(report["models"]) == {tiny_clip_dir.name, "other-clip"}
    table = (tmp_path / "out" / "report.md").read_text()
    assert "↑0.0" in table and "difference to other-clip" in table  # identical weights: no difference
    with pytest.raises(ValueError, match="baseline 'nope'"):
        run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, tmp_path / "o2", settings=FAST, baseline="nope")


def test_encoders_without_text_tower_get_a_linear_head_from_the_train_split(two_datasets, tmp_path, lore_cache):
    from safetensors.torch import load_file

    out = tmp_path / "out"
    report = run_benchmark(["digits-cnn"], ["cifar10"], two_datasets, out, settings=FAST, samples=10, head_samples=40,
                           cache_dir=str(lore_cache), device="cpu")
    assert report["datasets"]["cifar10"]["head"] == "linear (fitted on clean train features)"
    (saved,) = (out / "models" / "digits-cnn" / "heads").glob("cifar10-*.safetensors")  # named by its fingerprint
    head = load_file(str(saved))
    assert head["weight"].shape[1] == 32 and head["bias"].shape == head["weight"].shape[:1]
    pattern = str(saved.parent / saved.name.replace("cifar10", "{dataset}"))
    again = run_benchmark(["digits-cnn"], ["cifar10"], two_datasets, tmp_path / "fixed", settings=FAST, samples=10,
                          head_samples=40, cache_dir=str(lore_cache), device="cpu", linear_head=pattern)
    assert again["datasets"]["cifar10"]["head"].startswith("linear (loaded from")
    assert again["datasets"]["cifar10"]["clean"] == report["datasets"]["cifar10"]["clean"]


def test_cli_benchmark_flags_are_documented_and_checked(capsys, tmp_path):
    with pytest.raises(SystemExit):
        lore_main(["eval", "--help"])
    text = capsys.readouterr().out
    for flag in ("--benchmark", "--data-root", "--samples", "--out", "--baseline", "--linear-head"):
        assert flag in text
    assert lore_main(["eval", "--benchmark", "cifar10"]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert lore_main(["eval", "--benchmark", "cifar10", "--data-root", str(tmp_path), "--corruptions", "all"]) == 2
    assert "not part of the benchmark" in capsys.readouterr().err
    assert lore_main(["eval", "--benchmark", "cifar10", "--data-root", str(tmp_path), "--data", "digits"]) == 2
    assert "either --data" in capsys.readouterr().err
    assert lore_main(["eval", "--benchmark", "cifar10", "--data-root", str(tmp_path), "--device", "cpu"]) == 2
    assert "cifar-10-batches-py" in capsys.readouterr().err


def test_standin_writers_cover_the_paper():
    assert set(WRITERS) == set(PAPER_DATASETS)


def test_model_labels_are_short_and_file_safe(tmp_path):
    from lore.evaluation.benchmark import model_label

    run = tmp_path / "vitb32-lore4"
    (run / "export").mkdir(parents=True)
    assert model_label(str(run)) == model_label(str(run / "export")) == "vitb32-lore4"
    assert model_label("ViT-B-32", "openai") == "ViT-B-32_openai"
    assert model_label("timm:vit_base_patch14_dinov2", "weights/dinov2_b14.safetensors") == "timm_vit_base_patch14_dinov2_dinov2_b14"


def test_the_public_entry_points_answer_as_documented():
    import lore.data
    import lore.evaluation

    assert lore.data.zero_shot_metadata("imagenet1k")[0][0] == "tench"
    assert lore.evaluation.run_benchmark is run_benchmark and len(lore.data.PAPER_DATASETS) == 14
    with pytest.raises(AttributeError, match="no attribute 'zero_shot_metadata'"):  # one home per name
        lore.evaluation.zero_shot_metadata  # noqa: B018


def test_linear_probe_columns_are_not_labelled_zero_shot():
    from lore.evaluation.benchmark_report import markdown_table, model_summary

    settings = {"eps": ["1/255"], "samples": 10, "seed": 0, "n_iter": 3, "attacks": ["apgd-ce"]}

    def result(head):
        return {"clean": 0.5, "robust": {"1/255": 0.25}, "samples": 10, "attacks": ["apgd-ce"], "head": head}

    probe = {"cifar10": result("linear (fitted on clean train features)")}
    zero_shot = {"cifar10": result("zero-shot")}
    only_probe = markdown_table({"dino": model_summary(probe, ["cifar10"])}, ["cifar10"], "dino", settings)
    assert "Average linear probe" in only_probe and "Average zero-shot" not in only_probe
    assert "dino: no text tower, so a linear probe" in only_probe
    mixed = markdown_table({"clip": model_summary(zero_shot, ["cifar10"]), "dino": model_summary(probe, ["cifar10"])},
                           ["cifar10"], "clip", settings)
    assert "Average zero-shot / linear probe" in mixed
    clip_only = markdown_table({"clip": model_summary(zero_shot, ["cifar10"])}, ["cifar10"], "clip", settings)
    assert "Average zero-shot |" in clip_only and "linear probe" not in clip_only


def test_a_rerun_with_another_data_root_or_image_size_is_refused_not_reused(tiny_clip_dir, two_datasets, tmp_path):
    """Before, data_root and image_size were not in the stored settings: STL-10 25.0 % was reused where a fresh
    run on the other data gave 8.3 %."""
    import shutil

    out = tmp_path / "out"
    kwargs = dict(settings=FAST, samples=8, cache_dir=str(tmp_path / "cache"), device="cpu")
    run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)
    other_root = tmp_path / "other-data"
    shutil.copytree(two_datasets, other_root)
    with pytest.raises(ValueError, match="other settings.*data_root: stored"):
        run_benchmark([str(tiny_clip_dir)], ["cifar10"], other_root, out, **kwargs)
    with pytest.raises(ValueError, match="other settings.*image_size: stored None vs now 48"):
        run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, image_size=48, **kwargs)
    # the same data named another way is the same data: reused
    report = run_benchmark([str(tiny_clip_dir)], ["cifar10"], str(two_datasets) + "/", out, **kwargs)
    assert report["status"] == "complete"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"clean": 0.5}', '{"clean": 0.5, "robust": [], '
                                     '"samples": 3, "settings": {}}'])
def test_a_malformed_stored_result_is_named_not_a_traceback(tiny_clip_dir, two_datasets, tmp_path, content):
    out = tmp_path / "out"
    stored = out / "models" / tiny_clip_dir.name / "cifar10.json"
    stored.parent.mkdir(parents=True)
    stored.write_text(content)
    with pytest.raises(ValueError, match="cifar10.json is not a"):
        run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, settings=FAST, samples=8,
                      cache_dir=str(tmp_path / "cache"), device="cpu")


def test_a_misnamed_eurosat_folder_is_refused_by_name(tmp_path):
    """Ten folders, one misnamed (Forest -> Aaa): the count is right, every label after it would shift."""
    from standins import EUROSAT_FOLDERS, write_class_folders

    write_class_folders(tmp_path / "eurosat" / "2750", ["Aaa" if f == "Forest" else f for f in EUROSAT_FOLDERS])
    with pytest.raises(BenchmarkDataMissing, match=r"unexpected \['Aaa'\], missing \['Forest'\]"):
        build_benchmark_dataset("eurosat", tmp_path, 16)


def test_links_that_would_multiply_or_mislabel_images_are_refused(tmp_path):
    import os

    from standins import EUROSAT_FOLDERS, write_class_folders

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


@pytest.mark.parametrize("model", ["..", ".", "./", "../"])
def test_a_model_given_as_a_relative_folder_gets_a_label_inside_the_output(tmp_path, monkeypatch, model):
    """`--model ..` wrote its results to OUT/models/.. = OUT, outside OUT/models/."""
    from lore.evaluation.benchmark import model_label

    work = tmp_path / "runs" / "my-run"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    label = model_label(model)
    assert label not in ("", ".", "..") and "/" not in label
    assert label == ("runs" if model.startswith("..") else "my-run")


def test_check_data_lists_each_dataset_and_flags_partial_and_unreadable_ones(two_datasets, capsys):
    """The stand-ins hold 20 images where the releases hold 10,000 (CIFAR-10) and 8,000 (STL-10): partial copies are
    reported as such before any attack, and an unreadable dataset makes the check fail (exit 2)."""
    from lore.evaluation.benchmark import check_data, size_warning

    found = {entry["dataset"]: entry for entry in check_data(["cifar10", "stl10", "dtd"], two_datasets)}
    assert found["cifar10"]["status"] == "partial" and found["cifar10"]["images"] == 20
    assert found["cifar10"]["expected"] == 10_000 and found["cifar10"]["classes"] == 10
    assert found["dtd"]["status"] == "unreadable" and "dtd" in found["dtd"]["problem"]
    assert "a partial copy" in size_warning("cifar10", 20) and size_warning("cifar10", 10_000) is None
    code = lore_main(["eval", "--model", "ViT-B-32", "--benchmark", "cifar10,stl10,dtd", "--data-root",
                      str(two_datasets), "--check-data"])
    out = capsys.readouterr()
    assert code == 2 and "partial" in out.out and "dtd" in out.err
    assert lore_main(["eval", "--model", "ViT-B-32", "--benchmark", "cifar10,stl10", "--data-root", str(two_datasets),
                      "--check-data"]) == 0


def test_a_partial_dataset_is_warned_about_in_its_result(tiny_clip_dir, two_datasets, tmp_path):
    report = run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, tmp_path / "out", settings=FAST, samples=8,
                           cache_dir=str(tmp_path / "cache"), device="cpu")
    result = report["datasets"]["cifar10"]
    assert any("20 images where the release has 10000" in w for w in result["warnings"])


def test_a_rerun_over_changed_data_is_refused(tiny_clip_dir, two_datasets, tmp_path):
    """Same folder, other contents (a label changed in the CIFAR-10 test file): stored results are not reused."""
    import pickle as pickle_module

    out = tmp_path / "out"
    kwargs = dict(settings=FAST, samples=8, cache_dir=str(tmp_path / "cache"), device="cpu")
    run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)
    assert run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)["status"] == "complete"
    batch_file = two_datasets / "cifar-10-batches-py" / "test_batch"
    with open(batch_file, "rb") as f:
        batch = pickle_module.load(f)
    batch["labels"][0] = (batch["labels"][0] + 1) % 10
    with open(batch_file, "wb") as f:
        pickle_module.dump(batch, f)
    with pytest.raises(ValueError, match=r"other settings.*data \(the files or pixels under the data root changed\)"):
        run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)


def test_stored_results_are_not_reused_for_changed_weights(tiny_clip_dir, two_datasets, tmp_path):
    """Audit probe 1: overwriting the model's weights reused the old numbers under the old weights_sha256."""
    from safetensors.torch import load_file, save_file

    out = tmp_path / "out"
    kwargs = dict(settings=FAST, samples=8, cache_dir=str(tmp_path / "cache"), device="cpu")
    run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)
    weights = tiny_clip_dir / "open_clip_model.safetensors"
    state = load_file(str(weights))
    state["visual.proj"] = state["visual.proj"] * -1.0
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"other settings \(weights \(the encoder changed\): stored '[0-9a-f]{64}'"):
        run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)


def test_a_head_fitted_on_other_samples_or_weights_is_never_reused(two_datasets, tmp_path, lore_cache, monkeypatch):
    """Audit probe 2: after the stored result was deleted, a head fitted on 50 images was reused for --head-samples 150."""
    out = tmp_path / "out"
    kwargs = dict(settings=FAST, samples=10, cache_dir=str(lore_cache), device="cpu")
    stored = out / "models" / "digits-cnn" / "cifar10.json"
    run_benchmark(["digits-cnn"], ["cifar10"], two_datasets, out, head_samples=5, **kwargs)
    first = json.loads(stored.read_text())
    stored.unlink()
    fresh = run_benchmark(["digits-cnn"], ["cifar10"], two_datasets, tmp_path / "fresh", head_samples=20, **kwargs)
    rerun = run_benchmark(["digits-cnn"], ["cifar10"], two_datasets, out, head_samples=20, **kwargs)
    assert len(list((out / "models" / "digits-cnn" / "heads").glob("cifar10-*.safetensors"))) == 2  # one per fingerprint
    assert rerun["datasets"]["cifar10"]["clean"] == fresh["datasets"]["cifar10"]["clean"]
    assert json.loads(stored.read_text())["head_fingerprint"] != first["head_fingerprint"]
    # and a stored result is keyed on the head: a changed head is named, not reused
    with pytest.raises(ValueError, match=r"head_samples: stored 20 vs now 5.*head \(fitted on other data"):
        run_benchmark(["digits-cnn"], ["cifar10"], two_datasets, out, head_samples=5, **kwargs)


def test_stored_results_are_not_reused_for_changed_pixels(tiny_clip_dir, two_datasets, tmp_path):
    """Audit probe 3: inverting every CIFAR test pixel (labels kept) reused the stored accuracies."""
    import pickle as pickle_module

    out = tmp_path / "out"
    kwargs = dict(settings=FAST, samples=8, cache_dir=str(tmp_path / "cache"), device="cpu")
    run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)
    batch_file = two_datasets / "cifar-10-batches-py" / "test_batch"
    with open(batch_file, "rb") as f:
        batch = pickle_module.load(f)
    batch["data"] = 255 - batch["data"]
    with open(batch_file, "wb") as f:
        pickle_module.dump(batch, f)
    with pytest.raises(ValueError, match=r"data \(the files or pixels under the data root changed\)"):
        run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)


@pytest.mark.parametrize("shape, problem", [((3, 32), "has 3 classes, the dataset 10"), ((10, 7), "features are 32 wide")])
def test_a_given_linear_head_of_the_wrong_shape_is_named(two_datasets, tmp_path, lore_cache, shape, problem):
    """Audit: --linear-head with fewer rows than classes raised an IndexError, the wrong width a matmul error."""
    from safetensors.torch import save_file

    head = tmp_path / "head.safetensors"
    save_file({"weight": torch.zeros(shape), "bias": torch.zeros(shape[0])}, str(head))
    with pytest.raises(ValueError, match=problem):
        run_benchmark(["digits-cnn"], ["cifar10"], two_datasets, tmp_path / "out", settings=FAST, samples=10,
                      cache_dir=str(lore_cache), device="cpu", linear_head=str(head))


def test_a_stored_result_with_non_numeric_accuracy_is_named(tiny_clip_dir, two_datasets, tmp_path):
    out = tmp_path / "out"
    kwargs = dict(settings=FAST, samples=8, cache_dir=str(tmp_path / "cache"), device="cpu")
    run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)
    stored = out / "models" / tiny_clip_dir.name / "cifar10.json"
    stored.write_text(stored.read_text().replace('"clean": ', '"clean": "abc", "was": ', 1))
    with pytest.raises(ValueError, match="cifar10.json is not a dataset result.*accuracies in"):
        run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, **kwargs)
