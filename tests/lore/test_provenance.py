"""Provenance: the hashes change exactly when what they describe changes; reports carry them."""

from __future__ import annotations

import os
import re

import torch

from lore import provenance as prov


def test_weights_hash_is_equal_for_copies_and_changes_with_any_weight_or_dtype():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    same = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    same.load_state_dict(model.state_dict())
    assert prov.weights_sha256(model) == prov.weights_sha256(same)
    with torch.no_grad():
        same[0].weight[1, 2] += 1e-7
    assert prov.weights_sha256(model) != prov.weights_sha256(same)
    assert prov.weights_sha256(model) != prov.weights_sha256(model.double())
    assert re.fullmatch(r"[0-9a-f]{64}", prov.weights_sha256(model))


def test_file_fingerprint_sees_renames_size_changes_and_same_size_rewrites(tmp_path):
    for name in ("a/1.png", "b/2.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"xx")
    files = sorted(tmp_path.rglob("*.png"))
    first = prov.files_fingerprint(files, tmp_path)
    assert first["files"] == 2 and prov.files_fingerprint(reversed(files), tmp_path) == first  # order-free
    (tmp_path / "b/2.png").write_bytes(b"xxx")
    assert prov.files_fingerprint(files, tmp_path) != first
    second = prov.files_fingerprint(files, tmp_path)
    (tmp_path / "b/2.png").write_bytes(b"yyy")  # same size, other pixels: a rewrite moves the modification time
    os.utime(tmp_path / "b/2.png", ns=(1, 1))
    assert prov.files_fingerprint(files, tmp_path) != second
    (tmp_path / "b/2.png").rename(tmp_path / "a/2.png")
    assert prov.files_fingerprint(sorted(tmp_path.rglob("*.png")), tmp_path)["sha256"] != first["sha256"]


def test_code_version_names_the_commit_of_this_checkout():
    code = prov.code_version()
    assert code["package"]
    if code["commit"] is not None:  # a git checkout (CI clones one)
        assert re.fullmatch(r"[0-9a-f]{40}", code["commit"]) and isinstance(code["dirty"], bool)


def test_an_untracked_module_makes_the_checkout_dirty_and_a_run_output_does_not(tmp_path, monkeypatch):
    import subprocess

    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "lore").mkdir()
    (tmp_path / "lore" / "core.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("scratch/\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    monkeypatch.setattr(prov, "_SOURCE", tmp_path)
    assert prov.code_version()["dirty"] is False
    (tmp_path / "results.json").write_text("{}")  # an output: not code
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "ignored.py").write_text("")  # ignored by .gitignore
    assert prov.code_version()["dirty"] is False
    (tmp_path / "lore" / "patch.py").write_text("import os\n")  # a module the code may import
    assert prov.code_version()["dirty"] is True


def test_an_eval_report_carries_the_weights_hash_and_the_data_fingerprint(tmp_path):
    from lore.evaluation.config import EvalConfig
    from lore.evaluation.run import run_evaluation

    report = run_evaluation(EvalConfig(model="digits-cnn", data="digits", attacks="", n_samples=20,
                                       output=str(tmp_path / "out"), device="cpu", cache_dir=str(tmp_path / "cache")))
    provenance = report["provenance"]
    assert len(provenance["weights_sha256"]) == 64 and provenance["torch"] == torch.__version__
    assert provenance["data"]["spec"] == "digits" and provenance["data"]["items"] > 0
    assert provenance["code"]["package"]
