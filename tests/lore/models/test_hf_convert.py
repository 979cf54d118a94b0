"""`lore export --format hf`: only finished runs with their weights, only what converts exactly, into a folder
that appears whole or not at all (the round trip itself is in test_hf.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

transformers = pytest.importorskip("transformers")

from lore.cli import main  # noqa: E402
from lore.files import partial_folders  # noqa: E402
from lore.training.config import TrainConfig  # noqa: E402


@pytest.fixture
def run_folder(tmp_path, tiny_clip_dir):
    """A finished `lore train` run folder as the engine leaves it: config.json, summary.json, export/."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(tiny_clip_dir, run / "export")
    (run / "config.json").write_text(json.dumps(TrainConfig(model=f"local-dir:{tiny_clip_dir}").to_dict()))
    (run / "summary.json").write_text(json.dumps({"status": "finished", "step": 1, "total_steps": 1}))
    return run


def _one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_run_without_its_weights_or_unfinished_is_not_converted(run_folder, tmp_path, capsys):
    """With export/open_clip_model.safetensors deleted, a random-weight CLIPModel was written with exit 0; an
    interrupted run (which lore eval refuses) converted too."""
    (run_folder / "export" / "open_clip_model.safetensors").unlink()
    assert main(["export", str(run_folder), "--format", "hf", "--output", str(tmp_path / "hf")]) == 2
    assert "holds no open_clip_model.safetensors" in _one_line(capsys) and not (tmp_path / "hf").exists()
    assert main(["export", str(run_folder / "export"), "--format", "hf", "--output", str(tmp_path / "hf")]) == 2
    assert "holds no open_clip_model.safetensors" in _one_line(capsys)
    (run_folder / "summary.json").write_text(json.dumps({"status": "interrupted", "step": 1, "total_steps": 4}))
    assert main(["export", str(run_folder), "--format", "hf", "--output", str(tmp_path / "hf")]) == 2
    assert "did not finish (interrupted at step 1 of 4)" in _one_line(capsys)
    assert main(["export", str(run_folder / "export"), "--format", "hf", "--output", str(tmp_path / "hf")]) == 2
    assert "did not finish" in _one_line(capsys) and not (tmp_path / "hf").exists()


def test_an_output_inside_the_run_or_not_empty_is_refused_and_nothing_is_lost(run_folder, tmp_path, capsys):
    """--output RUN replaced the run's config.json with a transformers CLIPConfig; --output RUN/export mixed two
    libraries in one folder."""
    before = {p: p.read_bytes() for p in run_folder.rglob("*") if p.is_file()}
    for output in (run_folder, run_folder / "export", run_folder / "hf"):
        assert main(["export", str(run_folder), "--format", "hf", "--output", str(output)]) == 2
        assert "lies inside" in _one_line(capsys)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["export", str(run_folder), "--format", "hf", "--output", str(taken)]) == 2
    assert "exists and is not empty" in _one_line(capsys)
    assert {p: p.read_bytes() for p in run_folder.rglob("*") if p.is_file()} == before
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    assert main(["export", str(run_folder), "--format", "hf", "--output", str(tmp_path / "hf")]) == 0


def test_a_text_tower_without_the_causal_mask_is_refused(tmp_path, tiny_clip_dir, capsys):
    """no_causal_mask exported with exit 0: the image embeddings matched, the text embeddings were off by 2.8."""
    import open_clip
    from safetensors.torch import save_file

    source = tmp_path / "unmasked"
    source.mkdir()
    config = json.loads((tiny_clip_dir / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"]["no_causal_mask"] = True
    (source / "open_clip_config.json").write_text(json.dumps(config))
    clip = open_clip.create_model(f"local-dir:{source}", load_weights=False)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(source / "open_clip_model.safetensors"))
    assert main(["export", str(source), "--format", "hf", "--output", str(tmp_path / "hf")]) == 2
    assert "no causal mask" in _one_line(capsys) and not (tmp_path / "hf").exists()


def test_a_conversion_that_does_not_reproduce_open_clip_is_not_published(tmp_path, tiny_clip_dir, monkeypatch):
    """Convert only what you can check: the staged folder is loaded back and compared before it is renamed."""
    from lore.models import hf_convert
    from lore.models.encoders import load_open_clip

    built = load_open_clip(f"local-dir:{tiny_clip_dir}")
    original = hf_convert.clip_state_dict

    def off_by_a_little(clip):
        state = original(clip)
        state["text_model.final_layer_norm.bias"] = state["text_model.final_layer_norm.bias"] + 0.1
        return state

    monkeypatch.setattr(hf_convert, "clip_state_dict", off_by_a_little)
    with pytest.raises(ValueError, match="the converted text tower does not compute what open_clip's does"):
        hf_convert.export_open_clip_as_hf(built.clip, built.encoder, 32, tmp_path / "hf")
    assert not (tmp_path / "hf").exists() and partial_folders(tmp_path / "hf") == []


def test_the_exported_tokenizer_unescapes_html_as_open_clip_does(tmp_path, tiny_clip_dir):
    """open_clip's basic_clean unescapes HTML twice; the exported tokenizer did not (&amp; gave other ids, and a
    text embedding off by 1.54)."""
    import open_clip

    assert main(["export", str(tiny_clip_dir), "--format", "hf", "--output", str(tmp_path / "hf")]) == 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    processor = transformers.CLIPProcessor.from_pretrained(tmp_path / "hf")
    for text in ("rock &amp; roll", "fish &amp;amp; chips", "a &lt;tag&gt; and &quot;quotes&quot; it&#39;s"):
        ours = open_clip.tokenize([text])[0]
        expected = ours[ours != 0].tolist()
        assert tokenizer([text])["input_ids"][0] == expected, text
        assert processor.tokenizer([text])["input_ids"][0] == expected, text


KILLER = textwrap.dedent('''
    import os, signal, sys
    import transformers
    import lore.files as files
    import lore.models.hf_convert as convert
    from lore.cli import main

    point, source, output = sys.argv[1:]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def then_die(function):
        def wrapped(*args, **kwargs):
            function(*args, **kwargs)
            die()
        return wrapped

    if point == "weights":
        transformers.CLIPModel.save_pretrained = then_die(transformers.CLIPModel.save_pretrained)
    elif point == "processor":
        transformers.CLIPImageProcessor.save_pretrained = then_die(transformers.CLIPImageProcessor.save_pretrained)
    elif point == "vocab":
        convert.write_text_atomic = then_die(convert.write_text_atomic)
    elif point == "tokenizer":
        convert.save_clip_tokenizer = then_die(convert.save_clip_tokenizer)
    elif point == "rename":
        files._move_into_place = die
    main(["export", source, "--format", "hf", "--output", output])
''')


@pytest.mark.slow
@pytest.mark.parametrize("point", ["weights", "processor", "vocab", "tokenizer", "rename"])
def test_an_export_killed_at_any_point_leaves_nothing_lore_eval_would_load(tmp_path, tiny_clip_dir, capsys, point):
    """SIGKILL once preprocessor_config.json existed left a folder `lore eval --model hf:DIR` loaded and scored
    (exit 0) with a 2-token tokenizer. Killed after the weights, the processor, the vocabulary, the tokenizer or
    just before the rename: DIR does not exist, and both DIR and the staging folder are refused in one line."""
    output = tmp_path / "hf"
    done = subprocess.run([sys.executable, "-c", KILLER, point, str(tiny_clip_dir), str(output)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    assert not output.exists()
    left = partial_folders(output)
    assert len(left) == 1
    evaluate = ["--output", str(tmp_path / "eval"), "--device", "cpu", "--attacks", "", "--samples", "8"]
    assert main(["eval", "--model", f"hf:{output}", *evaluate]) == 2
    said = _one_line(capsys)
    assert f"no folder {output}" in said and "interrupted write left" in said and str(left[0]) in said
    assert main(["eval", "--model", f"hf:{left[0]}", *evaluate]) == 2
    assert "is incomplete: the job writing it was interrupted" in _one_line(capsys)
    assert not (tmp_path / "eval" / "report.json").exists()
