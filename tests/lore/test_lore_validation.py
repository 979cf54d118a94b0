"""`lore.validation`: the one rule that tells a path from a model name or a pretrained tag."""

import pytest

from lore.validation import looks_like_path


@pytest.mark.parametrize("text", ["runs/x", "./x", "..", "~/weights", "C:\\weights", "model.pt", "w.safetensors",
                                  "tower.bin", "model.pth"])
def test_paths_are_told_apart(text):
    assert looks_like_path(text)


@pytest.mark.parametrize("text", ["ViT-B-32", "openai", "laion2b_s34b_b79k", "digits-clip", "convnext_base.fb_in1k"])
def test_names_and_tags_are_not_paths(text):
    assert not looks_like_path(text)


def test_a_missing_pretrained_file_and_a_missing_model_folder_are_named_as_missing(tmp_path):
    from lore.evaluation.run import load_model
    from lore.models.encoders import load_open_clip

    with pytest.raises(FileNotFoundError, match="pretrained checkpoint file not found"):
        load_open_clip("ViT-B-32", str(tmp_path / "gone.pt"))
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_model(str(tmp_path / "gone"), None, None, cache_dir=str(tmp_path), seed=0, device="cpu")
