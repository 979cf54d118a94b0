"""The examples run end to end (small modes) and write what they promise."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lore.presets import EMBEDDED, PAPER, PRESET_FIELDS

ROOT = Path(__file__).resolve().parents[2]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # two xdist workers on two cores: no oversubscription


def run_example(name, *args, cwd=None, timeout=900, with_stderr=False):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    return (done.stdout, done.stderr) if with_stderr else done.stdout


def _refuse(constant: str):
    raise AssertionError(f"{constant} is not JSON: non-finite numbers must be written as null")


def strict_json(path: Path):
    """The JSON file at `path`, refusing NaN and Infinity as strict readers (jq, JSON.parse) do."""
    return json.loads(path.read_text(), parse_constant=_refuse)


def check_results(path: Path, methods: set, eps: set):
    results = strict_json(path)["methods"]
    assert set(results) == methods
    for entry in results.values():
        assert 0.0 <= entry["clean_accuracy"] <= 1.0
        assert 0.0 <= entry["within_margin"] <= 1.0
        assert set(entry["robust_accuracy"]) == eps
        assert all(re.fullmatch(r"\d+/255", k) for k in entry["robust_accuracy"])
        assert all(0.0 <= v <= entry["clean_accuracy"] for v in entry["robust_accuracy"].values())
    assert results["reference"]["within_margin"] == 1.0
    return results


@pytest.mark.slow
def test_lore_clip_quick_writes_results_and_plots(tmp_path, lore_cache):
    out = tmp_path / "out"
    stdout, stderr = run_example("lore_clip.py", "--quick", "--out", out, "--cache-dir", lore_cache, cwd=tmp_path,
                                 with_stderr=True)
    # output to a log, not a terminal: whole lines only (no bar redraws), a few per training
    assert "\r" not in stdout + stderr
    assert len(stderr.splitlines()) < 400, stderr[-2000:]
    assert re.search(r"lore eps=48/255: done 16/16 batch in [\d.]+ s", stderr)
    assert "shipped weights" in stdout and not list(Path(lore_cache).glob("digits-clip-*"))  # phi_0 was not retrained
    check_results(out / "results.json", {"reference", "fare", "fare-k", "naive", "lore"}, {"8/255", "16/255", "32/255"})
    payload = strict_json(out / "results.json")
    assert payload["status"] == "finished"
    provenance = payload["provenance"]
    assert len(provenance["weights_sha256"]) == 64 and provenance["code"]["package"]  # phi_0's weights, the code
    assert provenance["data"]["eval_images"] == payload["setting"]["eval_samples"]
    # the embedded job uses the embedded dual preset, says so, and results.json states what each LORE run used
    assert "dual preset: embedded" in stdout and payload["setting"]["dual_preset"] == "embedded"
    assert {name: payload["setting"][name] for name in PRESET_FIELDS} == EMBEDDED.values()
    for config_file in (out / "runs").glob("lore-*/config.json"):
        config = json.loads(config_file.read_text())
        for key in (*PRESET_FIELDS, "dual_preset", "warmup_steps"):
            assert config[key] == payload["setting"][key], (config_file, key)
    runs = payload["runs"]
    assert len({r["weights_sha256"] for r in runs}) == len(runs)  # every trained model is told apart
    for method in ("fare", "lore"):
        radii = {r["train_eps"] for r in runs if r["method"] == method}
        assert len(radii) >= 2, (method, radii)
    for entry in runs:
        assert set(entry) == {"method", "train_eps", "seed", "clean_accuracy", "robust_accuracy", "within_margin",
                              "relative_deviation", "weights_sha256", "final_probe"}
        assert entry["final_probe"]["step"] == payload["setting"]["steps"]  # the held-out probe at the end
        assert 0 <= entry["relative_deviation"]["q50"] <= entry["relative_deviation"]["q90"]
        if entry["method"] == "lore":  # a group without digits has no mean: null, never NaN
            means = [entry["final_probe"][f"lambda_{group}_mean"] for group in ("near", "inside")]
            assert any(m is not None for m in means) and all(m is None or m >= 0 for m in means), means
            near = entry["final_probe"]["near_fraction"]  # the near group is empty exactly when its mean is null
            assert 0 <= near <= 1 and (near == 0) == (means[0] is None), (near, means)
            # ... and the printed summary says which of the two it is for this run
            line = next(text for text in stdout.splitlines() if text.startswith(f"  lore {entry['train_eps']} seed {entry['seed']}:"))
            assert ("binds nowhere" in line) == (near == 0), line
            correlation = entry["final_probe"]["lambda_deviation_rank_correlation"]
            assert correlation is None or -1 <= correlation <= 1
        assert set(entry["robust_accuracy"]) == {"8/255", "16/255", "32/255"}
        assert 0 <= min(entry["robust_accuracy"].values()) <= entry["clean_accuracy"] <= 1
    # the headline comparison is the largest training radius, and its numbers are those of that run
    largest = payload["setting"]["train_eps"]
    lore_run = next(r for r in runs if r["method"] == "lore" and r["train_eps"] == largest)
    assert payload["methods"]["lore"]["clean_accuracy"] == lore_run["clean_accuracy"]
    for plot in ("accuracy.png", "series.png", "constraint.png", "clean_over_training.png"):
        assert (out / plot).stat().st_size > 10_000
    assert not (out / "training_curves.png").exists()  # constraint.png holds its panels; each run has its own
    assert "↑" in (out / "series.md").read_text() or "↓" in (out / "series.md").read_text()
    assert "\n- lore 48/255 seed 0: in margin" in (out / "series.md").read_text()  # lambda(x) at the end, a list


@pytest.mark.slow
@pytest.mark.parametrize("source", ["open_clip", "hf-siglip"])
def test_lore_clip_real_weights_path_on_tiny_models(tmp_path, lore_cache, tiny_clip_dir, digit_folders, source):
    """--model/--train-data/--eval-data as far as this machine allows, on image folders: a local-dir open_clip
    CLIP, and a tiny transformers SigLIP through `hf:` (its own zero-shot scale and bias; its runs export
    transformers folders with a model card)."""
    from hf_checkpoints import siglip_folder

    model = f"local-dir:{tiny_clip_dir}" if source == "open_clip" else f"hf:{siglip_folder(tmp_path / 'siglip')}"
    train_dir, val_dir = digit_folders
    out = tmp_path / "out"
    run_example("lore_clip.py", "--model", model, "--train-data", train_dir, "--train-eps", "2/255,4/255",
                "--eval-data", val_dir, "--steps", 2, "--batch-size", 8, "--eval-samples", 16, "--apgd-iter", 3,
                "--out", out, "--cache-dir", lore_cache, cwd=tmp_path)
    check_results(out / "results.json", {"reference", "fare", "fare-k", "naive", "lore"}, {"1/255", "2/255", "4/255", "8/255"})
    setting = json.loads((out / "results.json").read_text())["setting"]
    assert setting["train_eps"] == "4/255" and setting["rho"] == 0.1  # the paper's defaults with real weights
    assert setting["dual_preset"] == "paper"  # the paper's dual (Algorithm 1, App. C) with real weights
    assert {name: setting[name] for name in PRESET_FIELDS} == PAPER.values()
    lore_run = next((out / "runs").glob("lore-*"))
    lore_config = json.loads((lore_run / "config.json").read_text())
    assert {name: lore_config[name] for name in PRESET_FIELDS} == PAPER.values() and lore_config["warmup_steps"] == 0
    layout = "config.json" if source == "hf-siglip" else "open_clip_config.json"
    assert (lore_run / "export" / layout).is_file() and (lore_run / "export" / "README.md").is_file()


@pytest.mark.slow
def test_tecoa_variants_quick(tmp_path, lore_cache):
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(ROOT / "examples" / "tecoa_variants.py"), "--quick", "--out", str(out),
                    "--cache-dir", str(lore_cache)], check=True, capture_output=True, timeout=900, env=ONE_THREAD)
    check_results(out / "results.json", {"reference", "tecoa", "tecoa-l2", "tecoa-kl"}, {"8/255", "16/255", "32/255"})


@pytest.mark.slow
def test_constrained_loop_example_runs():
    out = run_example("constrained_loop.py", "--steps", 60)
    assert "constrained" in out and "unconstrained" in out


@pytest.mark.slow
def test_fairness_example_meets_its_bound_on_training_data():
    out = run_example("fairness_constraint.py", "--steps", 4000)
    bound = float(re.search(r"bound c = ([0-9.]+)", out).group(1))
    worst_constrained = float(re.search(r"^constrained\s+train\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)", out, re.M).group(1))
    assert worst_constrained <= bound + 5e-3


@pytest.mark.slow
def test_custom_constraint_example_runs():
    assert "within the custom margin" in run_example("custom_constraint.py")


@pytest.mark.slow
def test_lore_clip_interrupted_leaves_no_finished_results_and_resumes(tmp_path, lore_cache):
    """SIGTERM stops the whole job (not only the current training) and --resume finishes it."""
    import signal
    import time

    out = tmp_path / "out"
    args = [sys.executable, str(ROOT / "examples" / "lore_clip.py"), "--quick", "--methods", "fare,lore", "--steps", "12",
            "--eval-samples", "40", "--apgd-iter", "3", "--out", str(out), "--cache-dir", str(lore_cache)]
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"status": "finished", "methods": {}}))  # a stale earlier result
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD, cwd=tmp_path)
    deadline = time.time() + 600
    while time.time() < deadline:
        started = list(out.glob("runs/fare-*/metrics.jsonl"))
        if started and len(started[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    first = started[0].parent
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode != 0, stderr
    results = out / "results.json"
    assert not results.exists() or json.loads(results.read_text())["status"] == "interrupted"
    assert not list(out.glob("runs/lore-*"))  # the job stopped: the next method never started
    summary = json.loads((first / "summary.json").read_text())
    assert summary["status"] == "interrupted"

    run_example("lore_clip.py", *args[2:], "--resume", cwd=tmp_path)
    payload = json.loads(results.read_text())
    assert payload["status"] == "finished" and set(payload["methods"]) == {"reference", "fare", "lore"}
    resumed = json.loads((first / "summary.json").read_text())
    assert resumed["status"] == "finished" and resumed["start_step"] == summary["step"]


@pytest.mark.slow
def test_lore_clip_sweep_modes_write_their_fronts_and_tables(tmp_path, lore_cache):
    out = tmp_path / "out"
    tiny = ["--quick", "--steps", "3", "--eval-samples", "30", "--apgd-iter", "2", "--out", out, "--cache-dir", lore_cache]
    run_example("lore_clip.py", *tiny, "--sweep", "rho,lambda", "--seeds", "2", cwd=tmp_path)
    sweeps = json.loads((out / "sweeps.json").read_text())
    assert sweeps["status"] == "finished" and sweeps["seeds"] == [0, 1]
    rows = {(r["family"], r["value"]): r for r in sweeps["rows"]}
    assert [v for f, v in rows if f == "rho"] == [0.01, 0.03, 0.1, 0.3, 0.5]
    assert [v for f, v in rows if f == "lambda"] == [0.1, 0.3, 1.0, 3.0, 10.0]
    assert all(r["seeds"] == [0, 1] and r["clean_accuracy"][1] is not None for r in rows.values())  # mean, std
    # each LORE run's "within margin" is measured against its own rho
    for run in (r for r in sweeps["runs"] if r["family"] == "rho"):
        evaluations = json.loads(next(out.glob(f"runs/lore-rho{run['value']:g}-*seed{run['seed']}/evaluations.json")).read_text())
        assert evaluations[-1]["setting"]["rho"] == run["value"]
    assert "clean_accuracy" in sweeps["reference"]
    for plot in ("pareto_front.png", "rho_sweep.png"):
        assert (out / plot).stat().st_size > 10_000
    assert "deviation q90" in (out / "sweeps.md").read_text()
    # Table 8 (K), Table 13 (fixed margins, adaptive_margin off) and Fig. 8 (the dual), one seed, into a fresh folder
    other = tmp_path / "other"
    tiny_other = [a if a != out else other for a in tiny]
    run_example("lore_clip.py", *tiny_other, "--sweep", "K,tolerance,dual", cwd=tmp_path)
    sweeps = json.loads((other / "sweeps.json").read_text())
    values = {}
    for r in sweeps["rows"]:
        values.setdefault(r["family"], []).append(r["value"])
    assert values == {"fare": [None], "K": [1, 2, 3, 5, 7, 10], "tolerance": [0.1, 0.2, 0.4],
                      "dual": ["network", "linear", "scalar"]}
    assert sweeps["dual"]["dual_preset"] == "embedded" and sweeps["dual"]["dual_lr"] == 3e-2
    configs = {json.loads(p.read_text())["dual"] for p in other.glob("runs/lore-dual*/config.json")}
    assert configs == {"network", "linear", "scalar"}
    for p in other.glob("runs/lore-tolerance*/config.json"):
        config = json.loads(p.read_text())
        assert config["adaptive_margin"] is False and config["rho"] in (0.1, 0.2, 0.4)
    assert {json.loads(p.read_text())["primal_steps"] for p in other.glob("runs/lore-K*/config.json")} == {1, 2, 3, 5, 7, 10}
    for plot in ("sweep_K.png", "sweep_tolerance.png", "sweep_dual.png"):
        assert (other / plot).stat().st_size > 10_000
    run_example("lore_clip.py", *tiny, "--methods", "fare,lore", "--fixed-lambda", cwd=tmp_path)
    payload = json.loads((out / "results.json").read_text())
    fixed_runs = [r for r in payload["runs"] if r["method"] == "naive, LORE's lambda"]
    assert len(fixed_runs) == 2  # one per training radius
    for run in fixed_runs:
        lore_run = next(r for r in payload["runs"] if r["method"] == "lore" and r["train_eps"] == run["train_eps"])
        assert run["naive_weight"] == pytest.approx(lore_run["final_probe"]["lambda_mean"], abs=1e-4)
        folder = next(out.glob(f"runs/naive-lorelambda-eps{run['train_eps'].replace('/', 'of')}-seed0"))
        assert json.loads((folder / "config.json").read_text())["naive_weight"] == run["naive_weight"]
    # Square and Gaussian noise on the series' models: reuses them, leaves the series' results.json alone, caches
    series = (out / "results.json").read_bytes()
    run_example("lore_clip.py", *tiny, "--methods", "fare,lore", "--black-box", "--square-queries", "5", cwd=tmp_path)
    assert (out / "results.json").read_bytes() == series
    black_box = json.loads((out / "black_box.json").read_text())
    assert black_box["status"] == "finished" and black_box["dual"]["dual_preset"] == "embedded"
    assert [(r["method"], r["train_eps"]) for r in black_box["rows"]] == [(m, e) for e in ("16/255", "48/255")
                                                                          for m in ("fare", "lore")]
    for row in black_box["rows"]:
        clean = row["clean_accuracy"][0]
        assert all(0 <= v[0] <= clean + 1e-9 for v in row["square"].values())  # an attack never helps
        assert len(row["gaussian_noise"]) == len(black_box["noise_sigmas"]) == 4
        assert all(0 <= v[0] <= 1 for v in row["gaussian_noise"].values())
    caches = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/black_box.json")}
    assert len(caches) == 4
    run_example("lore_clip.py", *tiny, "--methods", "fare,lore", "--black-box", "--square-queries", "5", cwd=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/black_box.json")} == caches  # nothing recomputed
    assert (out / "noise.png").stat().st_size > 10_000


@pytest.mark.slow
def test_robust_constraint_example_compares_at_matched_robustness():
    out = run_example("robust_constraint.py", "--steps", 25, "--gammas", "0.5,1.0")
    assert "PGD adversarial training" in out and "constrained, gamma = 0.5" in out and "matched robustness" in out
