"""`--model hf:PATH`: `transformers` checkpoints in (CLIP, SigLIP, DINOv2) and out, checked against
`transformers`' own forward on tiny random models written offline."""

from __future__ import annotations

import pytest
import torch

from hf_checkpoints import PATCH, SIZE, clip_folder, dinov2_folder, normalised, siglip_folder

transformers = pytest.importorskip("transformers")

from lore.heads import class_text_embeddings  # noqa: E402
from lore.models.build import build_model, zero_shot_head  # noqa: E402
from lore.models.export import load_exported  # noqa: E402
from lore.training.config import TrainConfig  # noqa: E402
from lore.training.engine import train  # noqa: E402


def _build(folder, image_size=None):
    return build_model(f"hf:{folder}", None, image_size, cache_dir=folder.parent, seed=0, device=torch.device("cpu"))


def _pixels(n=4, size=SIZE, seed=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("make,kind", [(clip_folder, "hf-clip"), (siglip_folder, "hf-siglip"), (dinov2_folder, "hf-dinov2")])
def test_the_encoder_is_the_classes_own_image_embedding(tmp_path, make, kind):
    folder = make(tmp_path / kind)
    built = _build(folder)
    assert built.kind == kind and built.image_size == SIZE
    pixels = _pixels()
    with torch.no_grad():
        ours = built.encoder.eval()(pixels)
        if kind == "hf-clip":
            theirs = transformers.CLIPVisionModelWithProjection.from_pretrained(folder)(
                pixel_values=normalised(pixels)).image_embeds
        elif kind == "hf-siglip":
            theirs = transformers.SiglipVisionModel.from_pretrained(folder)(pixel_values=normalised(pixels)).pooler_output
        else:
            theirs = transformers.Dinov2Model.from_pretrained(folder)(pixel_values=normalised(pixels)).pooler_output
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("make,vision_class,output", [
    (clip_folder, "CLIPVisionModelWithProjection", "image_embeds"),
    (siglip_folder, "SiglipVisionModel", "pooler_output"),
])
def test_round_trip_train_export_and_transformers_loads_the_tuned_tower(tmp_path, make, vision_class, output):
    """hf: model -> `lore train` 2 steps -> export -> transformers' vision class: its embedding equals lore's
    encoder on the same pixels (<= 1e-5, float32), the tower moved, and AutoModel loads the whole model."""
    folder = make(tmp_path / "source")
    run = tmp_path / "run"
    result = train(TrainConfig(model=f"hf:{folder}", data="digits", output=str(run), max_steps=2, batch_size=8,
                               pgd_steps=1, primal_steps=1, probe_every=0, method="lore", lr=1e-3, device="cpu"))
    assert result.status == "finished"
    export = run / "export"
    pixels = _pixels()
    with torch.no_grad():
        ours = load_exported(export).eval()(pixels)
        tower = getattr(transformers, vision_class).from_pretrained(export)
        theirs = getattr(tower(pixel_values=normalised(pixels)), output)
        before = getattr(getattr(transformers, vision_class).from_pretrained(folder)(pixel_values=normalised(pixels)), output)
    assert (ours - theirs).abs().max() <= 1e-5
    assert (theirs - before).abs().max() > 1e-4  # the export holds the fine-tuned tower, not the original
    whole = transformers.AutoModel.from_pretrained(export)
    source = transformers.AutoModel.from_pretrained(folder)
    for (name, tuned), (_, original) in zip(whole.state_dict().items(), source.state_dict().items()):
        if name.startswith("text_model") or name.startswith("text_projection"):
            assert torch.equal(tuned, original), name  # the text tower is the original one
    assert transformers.AutoTokenizer.from_pretrained(export)("a photo of a cat")["input_ids"]
    assert (export / "preprocessor_config.json").is_file()


def test_zero_shot_logits_equal_clipmodels_forward(tmp_path):
    """lore's zero-shot head on an hf: CLIP (its text tower, its own logit scale) gives transformers' CLIPModel
    logits_per_image on the same images and prompts (<= 1e-4)."""
    folder = clip_folder(tmp_path / "clip")
    built = _build(folder)
    classnames = ["cat", "dog", "bird"]
    pixels = _pixels()
    with torch.no_grad():
        embeddings = class_text_embeddings(built.clip, built.tokenizer, classnames, ["a photo of a {}."])
        ours = zero_shot_head(built, embeddings)(built.encoder.eval()(pixels))
        model = transformers.CLIPModel.from_pretrained(folder)
        tokens = transformers.AutoTokenizer.from_pretrained(folder)([f"a photo of a {c}." for c in classnames],
                                                                    padding=True, return_tensors="pt")
        theirs = model(**tokens, pixel_values=normalised(pixels)).logits_per_image
    assert (ours - theirs).abs().max() <= 1e-4


def test_siglip_zero_shot_has_its_own_scale_and_bias(tmp_path):
    folder = siglip_folder(tmp_path / "siglip")
    built = _build(folder)
    model = transformers.SiglipModel.from_pretrained(folder)
    assert built.logit_scale == pytest.approx(float(model.logit_scale.detach().exp()))
    assert built.logit_bias == pytest.approx(float(model.logit_bias))
    classnames = ["cat", "dog"]
    pixels = _pixels()
    with torch.no_grad():
        embeddings = class_text_embeddings(built.clip, built.tokenizer, classnames, ["a photo of a {}."])
        ours = zero_shot_head(built, embeddings)(built.encoder.eval()(pixels))
        tokens = transformers.AutoTokenizer.from_pretrained(folder)([f"a photo of a {c}." for c in classnames],
                                                                    padding="max_length", max_length=16,
                                                                    return_tensors="pt")
        theirs = model(input_ids=tokens["input_ids"], pixel_values=normalised(pixels)).logits_per_image
    assert (ours - theirs).abs().max() <= 1e-4


@pytest.mark.parametrize("make", [clip_folder, siglip_folder])
def test_another_image_size_resamples_the_position_table_as_transformers_interpolates(tmp_path, make):
    """--image-size 48 on a 32 px checkpoint: the resampled table gives transformers' interpolate_pos_encoding=True
    forward of the original, and the config records the new size."""
    folder = make(tmp_path / "m")
    built = _build(folder, image_size=48)
    pixels = _pixels(size=48)
    vision_class = "CLIPVisionModelWithProjection" if make is clip_folder else "SiglipVisionModel"
    with torch.no_grad():
        ours = built.encoder.eval()(pixels)
        out = getattr(transformers, vision_class).from_pretrained(folder)(pixel_values=normalised(pixels),
                                                                           interpolate_pos_encoding=True)
        theirs = out.image_embeds if make is clip_folder else out.pooler_output
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert built.hf.model.config.vision_config.image_size == 48
    with pytest.raises(ValueError, match="not a multiple of .*patch size 8"):
        _build(folder, image_size=SIZE + PATCH // 2)


def test_missing_folders_and_files_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder .*nothing is downloaded"):
        _build(tmp_path / "absent")
    folder = clip_folder(tmp_path / "clip")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no preprocessor_config.json"):
        _build(folder)
    other = dinov2_folder(tmp_path / "dino")
    config = (other / "config.json").read_text().replace('"Dinov2Model"', '"Dinov2ForImageClassification"')
    (other / "config.json").write_text(config)
    with pytest.raises(ValueError, match="'Dinov2ForImageClassification', which is not supported"):
        _build(other)


def test_lore_export_format_hf_converts_an_open_clip_vit_that_transformers_computes_the_same(tmp_path, tiny_clip_dir):
    """A tiny open_clip ViT CLIP (`local-dir:`, written by the tests) -> `lore export --format hf`: transformers'
    image and text embeddings equal open_clip's (<= 1e-5), the tokenizer gives open_clip's ids, and LLaVA's tower
    class loads the folder."""
    import open_clip

    from lore.cli import main

    source = tmp_path / "export"
    source.mkdir()
    for item in tiny_clip_dir.iterdir():
        (source / item.name).write_bytes(item.read_bytes())
    out = tmp_path / "hf"
    assert main(["export", str(source), "--format", "hf", "--output", str(out)]) == 0
    clip = open_clip.create_model(f"local-dir:{source}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{source}")
    model = transformers.CLIPModel.from_pretrained(out).eval()
    pixels = _pixels()
    prompts = ["a photo of a cat.", "a photo of the digit seven", "an image of two dogs"]
    ids = tokenizer(prompts)
    with torch.no_grad():
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD))
        theirs_image = model.get_image_features(pixel_values=(pixels - mean) / std)
        theirs_image = theirs_image if isinstance(theirs_image, torch.Tensor) else theirs_image.pooler_output
        torch.testing.assert_close(theirs_image, clip.encode_image((pixels - mean) / std), atol=1e-5, rtol=0)
        hf_tokens = transformers.AutoTokenizer.from_pretrained(out)(prompts, padding=True, return_tensors="pt")
        for row, ours in zip(hf_tokens["input_ids"], ids):
            assert row[: int((ours != 0).sum())].tolist() == ours[ours != 0].tolist()
        text = model.get_text_features(**hf_tokens)
        text = text if isinstance(text, torch.Tensor) else text.pooler_output
        torch.testing.assert_close(text, clip.encode_text(ids), atol=1e-5, rtol=0)
        tower = transformers.CLIPVisionModelWithProjection.from_pretrained(out)
        torch.testing.assert_close(tower(pixel_values=(pixels - mean) / std).image_embeds, theirs_image, atol=1e-6, rtol=0)
    assert _build(out).kind == "hf-clip"  # and lore reads it back as hf:


def test_export_format_hf_refuses_what_transformers_clip_cannot_express(tmp_path, capsys, tiny_clip_dir):
    """An average-pooled ViT tower has no transformers CLIP equivalent: one line says so, nothing is written."""
    import json

    import open_clip
    from safetensors.torch import save_file

    from lore.cli import main

    source = tmp_path / "avg"
    source.mkdir()
    tiny = json.loads((tiny_clip_dir / "open_clip_config.json").read_text())["model_cfg"]
    config = {**tiny, "vision_cfg": {**tiny["vision_cfg"], "pool_type": "avg"}}
    (source / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
    clip = open_clip.create_model(f"local-dir:{source}", load_weights=False)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(source / "open_clip_model.safetensors"))
    assert main(["export", str(source), "--format", "hf", "--output", str(tmp_path / "x")]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "no transformers CLIP equivalent" in said[0] and "class token" in said[0]
    assert not (tmp_path / "x").exists()
    assert main(["export", str(tmp_path / "nothing"), "--format", "hf", "--output", str(tmp_path / "y")]) == 2


def test_the_export_is_a_drop_in_llava_vision_tower(tmp_path):
    """docs/using.md's line on a tiny transformers LLaVA built from its config: after loading the export's
    CLIPVisionModel weights into its tower, LLaVA's image features are the ones the export's tower gives (the
    penultimate layer's patch features), and differ from the tower it had."""
    folder = clip_folder(tmp_path / "source")
    run = tmp_path / "run"
    train(TrainConfig(model=f"hf:{folder}", data="digits", output=str(run), max_steps=2, batch_size=8, pgd_steps=1,
                      probe_every=0, method="fare", lr=1e-3, device="cpu"))
    export = run / "export"
    vision = transformers.CLIPVisionConfig.from_pretrained(export)
    text = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=2)
    llava = transformers.LlavaForConditionalGeneration(transformers.LlavaConfig(vision_config=vision, text_config=text,
                                                                                image_token_index=63)).eval()
    pixels = normalised(_pixels())
    with torch.no_grad():
        before = llava.model.get_image_features(pixel_values=pixels)
        llava.model.vision_tower.load_state_dict(transformers.CLIPVisionModel.from_pretrained(export).state_dict())
        after = llava.model.get_image_features(pixel_values=pixels)
        tower = transformers.CLIPVisionModel.from_pretrained(export).eval()
        patches = tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        expected = llava.model.multi_modal_projector(patches)
    after = after if isinstance(after, torch.Tensor) else after.pooler_output
    before = before if isinstance(before, torch.Tensor) else before.pooler_output
    after, before = (torch.cat(list(t)) if isinstance(t, (list, tuple)) else t for t in (after, before))
    torch.testing.assert_close(after.reshape(expected.shape), expected, atol=1e-5, rtol=0)
    assert (after - before).abs().max() > 1e-3


def test_lore_eval_on_an_hf_clip_scores_what_transformers_predicts(tmp_path):
    """`lore eval --model hf:...` end to end on the digits: its clean accuracy is the accuracy of transformers'
    own CLIP scores with the same prompts (the two default templates, averaged as CLIP's zero-shot recipe)."""
    import torch.nn.functional as F

    from lore.data.images import build_dataset, probe_subset
    from lore.data.zero_shot import prompt_templates
    from lore.evaluation.config import EvalConfig
    from lore.evaluation.run import run_evaluation

    folder = clip_folder(tmp_path / "clip")
    report = run_evaluation(EvalConfig(model=f"hf:{folder}", data="digits", attacks="", n_samples=60,
                                       output=str(tmp_path / "eval"), device="cpu"))
    assert report["head"] == "zero-shot" and report["n_samples"] == 60
    test_set = build_dataset("digits", SIZE, split="test", seed=0)
    images, labels = probe_subset(test_set, 60, 0)
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        rows = []
        for name in test_set.classnames:
            tokens = tokenizer([t.format(name) for t in prompt_templates("hf-clip")], padding=True, return_tensors="pt")
            text = model.get_text_features(**tokens)
            text = F.normalize(text if isinstance(text, torch.Tensor) else text.pooler_output, dim=1)
            rows.append(F.normalize(text.mean(0), dim=0))
        image = model.get_image_features(pixel_values=normalised(images))
        image = image if isinstance(image, torch.Tensor) else image.pooler_output
        predicted = (F.normalize(image, dim=1) @ torch.stack(rows).T).argmax(1)
    assert report["clean_accuracy"] == pytest.approx(float((predicted == labels).float().mean()))


# --- the boundary: every file of an hf: folder checked, naming the file and the field (issue 46) -------------


def _drop_weights(folder, keep):
    """Rewrites model.safetensors keeping the entries `keep(name)` accepts."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in state.items() if keep(k)}, str(folder / "model.safetensors"))


@pytest.mark.parametrize("case", ["some vision keys", "every key", "more layers in the config"])
def test_weights_missing_what_the_config_names_are_refused_unless_allowed(tmp_path, case):
    """from_pretrained started the missing tensors at random and hf.py never read its missing keys: a folder
    without its vision weights trained (and exported) a random tower with exit 0."""
    import json
    import warnings

    folder = clip_folder(tmp_path / "clip")
    if case == "some vision keys":
        _drop_weights(folder, lambda k: "vision_model.encoder" not in k)
    elif case == "every key":
        _drop_weights(folder, lambda k: False)
    else:
        config = json.loads((folder / "config.json").read_text())
        config["vision_config"]["num_hidden_layers"] = 2
        (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"weight entries the config names are not in .*--allow-missing"):
        _build(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = build_model(f"hf:{folder}", None, None, cache_dir=tmp_path, seed=0, device=torch.device("cpu"),
                            allow_missing=True)
    said = [str(w.message) for w in caught if "--allow-missing" in str(w.message)]
    assert len(said) == 1 and "start at random" in said[0] and "vision_model.encoder.layers" in said[0]
    assert built.hf.missing and all(name in said[0] for name in built.hf.missing)


def _json(folder, name, value):
    import json

    (folder / name).write_text(value if isinstance(value, str) else json.dumps(value))


@pytest.mark.parametrize("file,value,needle", [
    ("config.json", [1, 2], r"config.json must hold a JSON object, got a list"),
    ("config.json", "{not json", r"config.json is not valid JSON"),
    ("preprocessor_config.json", "", r"preprocessor_config.json is not valid JSON \(Expecting value"),
    ("preprocessor_config.json", [0.5], r"preprocessor_config.json must hold a JSON object"),
    ("preprocessor_config.json", {"image_std": [0.5, 0.5, 0.5]}, r"image_mean must be a finite number or a list of 3 .*got missing"),
    ("preprocessor_config.json", {"image_mean": [0.5] * 3, "image_std": "0.5"}, r"image_std must be .* got '0.5'"),
    ("preprocessor_config.json", {"image_mean": [0.5] * 3, "image_std": [0.5, float("nan"), 0.5]}, r"image_std must be a finite"),
    ("preprocessor_config.json", {"image_mean": [0.5] * 3, "image_std": [0.5, 0.5]}, r"image_std must be .*list of 3"),
    ("preprocessor_config.json", {"image_mean": [0.5] * 3, "image_std": [0.5, 0.0, 0.5]}, r"image_std must be positive"),
])
def test_bad_json_and_processor_settings_are_one_line_errors_naming_the_file(tmp_path, file, value, needle):
    import json

    folder = clip_folder(tmp_path / "clip")
    if isinstance(value, dict):  # the processor's own settings with image_mean and image_std replaced
        kept = {k: v for k, v in json.loads((folder / file).read_text()).items() if k not in ("image_mean", "image_std")}
        value = json.dumps({**kept, **value})  # NaN is written as the bare word, which Python's reader accepts
    _json(folder, file, value)
    with pytest.raises(ValueError, match=needle) as raised:
        _build(folder)
    assert str(folder / file) in str(raised.value) and "\n" not in str(raised.value)


def test_scalar_and_one_channel_mean_and_std_apply_to_every_channel(tmp_path):
    """transformers accepts image_mean: 0.5; lore failed with a shape message on it and on one-entry lists."""
    import json

    folder = clip_folder(tmp_path / "clip")
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    _json(folder, "preprocessor_config.json", {**processor, "image_mean": 0.5, "image_std": [0.25]})
    encoder = _build(folder).encoder
    assert encoder.mean.flatten().tolist() == [0.5] * 3 and encoder.std.flatten().tolist() == [0.25] * 3


def test_transformers_5_processor_layout_is_read(tmp_path):
    """CLIPProcessor.save_pretrained (transformers 5) writes processor_config.json alone; hf: asked for
    preprocessor_config.json after the user did what it said."""
    folder = clip_folder(tmp_path / "clip")
    image_processor = transformers.CLIPImageProcessor.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    (folder / "preprocessor_config.json").unlink()
    transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    assert (folder / "processor_config.json").is_file() and not (folder / "preprocessor_config.json").exists()
    built = _build(folder)
    assert built.encoder.mean.flatten().tolist() == pytest.approx(image_processor.image_mean)
    export = tmp_path / "export"
    from lore.models.export import export_encoder

    export_encoder(built, f"hf:{folder}", export)
    assert _build(export).encoder.std.flatten().tolist() == pytest.approx(image_processor.image_std)


def test_failures_inside_transformers_are_one_line_errors(tmp_path):
    """A hostile pickle, weights of another width, a config naming the wrong class: each escaped as a traceback
    (UnpicklingError, RuntimeError, AttributeError after building a random model)."""
    import json
    import pickle

    folder = clip_folder(tmp_path / "pickle")
    (folder / "model.safetensors").unlink()

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Boom()}))
    with pytest.raises(ValueError, match="transformers cannot load") as raised:
        _build(folder)
    assert "\n" not in str(raised.value)
    wide = clip_folder(tmp_path / "wide")
    config = json.loads((wide / "config.json").read_text())
    config["vision_config"]["intermediate_size"] = 96
    (wide / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="(do not have the shape config.json gives them|transformers cannot load)"):
        _build(wide)
    wrong = clip_folder(tmp_path / "wrong")
    config = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**config, "architectures": ["Dinov2Model"]}))
    with pytest.raises(ValueError, match="names Dinov2Model but model_type 'clip'"):
        _build(wrong)


def test_a_text_tower_needs_a_tokenizer_that_tells_prompts_apart(tmp_path):
    """Without tokenizer files transformers 5 builds a 2-token tokenizer: every class prompt got the same ids, and
    lore eval reported 0.3333 clean and APGD accuracy (one class always predicted) with no warning."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bare = clip_folder(tmp_path / "bare")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).unlink()
    with pytest.raises(FileNotFoundError, match="has a text tower but no tokenizer"):
        _build(bare)
    blind = clip_folder(tmp_path / "blind")
    core = Tokenizer(models.WordLevel({"<unk>": 0, "<pad>": 1}, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>").save_pretrained(blind)
    with pytest.raises(ValueError, match="gives 4 different prompts the same ids"):
        _build(blind)


def test_a_dinov2_input_side_its_patches_do_not_tile_is_refused(tmp_path):
    """DINOv2 accepted --image-size 36 with patch 8: 4 pixel rows and columns never reached the model."""
    with pytest.raises(ValueError, match="image_size 36 is not a multiple of .*patch size 8"):
        _build(dinov2_folder(tmp_path / "dino"), image_size=36)


def test_loading_prints_no_warning(tmp_path):
    """Every hf: command printed `UserWarning: Converting a tensor with requires_grad=True to a scalar`."""
    import warnings

    folder = siglip_folder(tmp_path / "siglip")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _build(folder)


def test_the_export_copies_only_what_the_tokenizer_and_processor_use(tmp_path):
    """Every PROCESSOR_FILES entry was copied with shutil.copy2, used or not: a spiece.model linked to a mode-600
    file outside was copied into export/, the folder meant for publishing."""
    from lore.models.export import export_encoder

    secret = tmp_path / "secret"
    secret.write_text("api key")
    secret.chmod(0o600)
    folder = clip_folder(tmp_path / "clip")
    (folder / "spiece.model").symlink_to(secret)
    (folder / "merges.txt").write_text("unused by this tokenizer")
    export_encoder(_build(folder), f"hf:{folder}", tmp_path / "export")
    written = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert "spiece.model" not in written and "merges.txt" not in written
    assert not any("api key" in p.read_text(errors="replace") for p in (tmp_path / "export").iterdir())
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= set(written)
