"""The paper's benchmark, offline: stand-ins of all 14 datasets in their release formats, metadata, the resumable runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


from lore.cli import main as lore_main
from lore.evaluation import benchmark as benchmark_module
from lore.evaluation import head_cache
from lore.evaluation.benchmark import run_benchmark
from lore.evaluation.head_cache import cached_class_embeddings
from lore.data.benchmark import BenchmarkDataMissing, build_benchmark_dataset
from lore.evaluation.suite import EvalSettings

from benchmark_standins import write_cifar10, write_stl10

FAST = EvalSettings(eps=(1 / 255, 4 / 255), n_iter=3, batch_size=16, progress=False)


@pytest.fixture
def two_datasets(tmp_path):
    root = tmp_path / "data"
    write_cifar10(root, 20)
    write_stl10(root, 20)
    return root


def test_missing_datasets_name_their_layout_all_at_once(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(BenchmarkDataMissing, match="stl10_binary/.*test_X.bin.*Nothing is downloaded"):
        build_benchmark_dataset("stl10", tmp_path, 32)
    with pytest.raises(FileNotFoundError) as caught:
        benchmark_module.check_datasets_present(["cifar10", "stl10", "dtd", "flowers"], tmp_path)
    message = str(caught.value)
    assert "3 of 4" in message and "stl10" in message and "dtd/dtd" in message and "flowers-102" in message
    assert "cifar10:" not in message


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


def test_a_stored_dataset_result_keeps_the_json_layout(tiny_clip_dir, two_datasets, tmp_path):
    """`DatasetResult.as_dict()` and the key it was computed from write the file the dict records of earlier
    versions wrote: the same keys, in the same order, and the numbers `evaluate` measured."""
    out = tmp_path / "out"
    run_benchmark([str(tiny_clip_dir)], ["cifar10"], two_datasets, out, settings=FAST, samples=10,
                  cache_dir=str(tmp_path / "cache"), device="cpu")
    stored = json.loads((out / "models" / tiny_clip_dir.name / "cifar10.json").read_text())
    assert list(stored) == ["clean", "robust", "robust_by_attack", "attacks", "samples", "classes", "head", "warnings",
                            "dataset_images", "alignment", "model", "settings", "weights_sha256", "data_fingerprint",
                            "head_fingerprint"]
    assert stored["samples"] == 10 and stored["classes"] == 10 and stored["head"] == "zero-shot"
    assert stored["robust"] == {eps: row[stored["attacks"][0]] for eps, row in stored["robust_by_attack"].items()}
    assert benchmark_module.DatasetResult(**{k: stored[k] for k in list(stored)[:10]}).as_dict() == \
        {k: stored[k] for k in list(stored)[:10]}
