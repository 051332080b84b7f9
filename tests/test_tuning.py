"""KerasTuner searches on retrieval metrics (`python -m tuning.search`), on the generated catalogue."""

import csv
import json
import os

import keras_tuner
import pytest

TINY = ["--epochs", "1", "--image-size", "64x48", "--backbone", "koch", "--backbone-option", "width=4",
        "--steps-per-epoch", "2", "--train-option", "p=6", "--train-option", "k=4", "--train-option", "augment=false",
        "--val", "images:0.34"]


def _history(run_dir):
    return json.load(open(os.path.join(run_dir, "state.json")))["history"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["siamese", "protonet"])
def test_a_two_trial_search_picks_the_best_val_map_resumes_and_its_run_evaluates(arch, catalogue, tmp_path, capsys):
    from tuning import search
    from visnet import evaluate

    out = str(tmp_path / "search")
    args = ["--arch", arch, "--data", catalogue, "--out", out, "--max-trials", "2", *TINY]
    assert search.main(args) == 0, capsys.readouterr().err
    summary = json.load(open(os.path.join(out, "search.json")))
    runs = os.path.join(out, "search", "runs")
    trials = sorted(os.listdir(runs))
    assert len(trials) == 2
    scores = {t.split("_")[1]: max(e["val_mAP"] for e in _history(os.path.join(runs, t))) for t in trials}
    losses = {t.split("_")[1]: _history(os.path.join(runs, t))[-1]["loss"] for t in trials}
    # The best trial is the one with the highest val_mAP in its logs, whatever its loss.
    assert summary["best_trial"] == max(scores, key=scores.get), (scores, losses)
    assert summary["best_score"] == pytest.approx(max(scores.values()))
    assert _history(os.path.join(out, "best-run")) == _history(os.path.join(runs, f"trial_{summary['best_trial']}"))
    with open(os.path.join(out, "results.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["trial"] for r in rows] == ["0", "1"] and all(r["status"] == "COMPLETED" for r in rows)
    assert {"val_mAP", "epochs", "seconds", "lr"} <= set(rows[0])
    assert "(best)" in open(os.path.join(out, "results.md")).read()
    for row in rows:  # a trial lists only the hyperparameters it used
        assert (row.get("top_k") or None) is None or row["mining"] == "top-k"
    assert os.path.getsize(os.path.join(out, "objective.png")) > 1000
    capsys.readouterr()

    # Started again, the search keeps its finished trials and trains nothing.
    stamps = {t: os.path.getmtime(os.path.join(runs, t, "state.json")) for t in trials}
    assert search.main(args) == 0
    assert "2 finished trial(s) kept" in capsys.readouterr().err
    assert sorted(os.listdir(runs)) == trials
    assert stamps == {t: os.path.getmtime(os.path.join(runs, t, "state.json")) for t in trials}

    # The best run is a run like any other: it evaluates and exports.
    from visnet import export

    assert evaluate.main(["--run", os.path.join(out, "best-run"), "--data", catalogue, "--no-progress"]) == 0
    assert export.main(["--run", os.path.join(out, "best-run"), "--out", str(tmp_path / "models" / "best")]) == 0


@pytest.mark.slow
def test_fixed_and_narrowed_hyperparameters_and_the_defaults_run(catalogue, tmp_path, capsys):
    from tuning import search

    space = tmp_path / "space.yaml"
    space.write_text("lr: {min: 0.001, max: 0.002, sampling: log}\nembedding_dim: [32]\n")
    out = str(tmp_path / "search")
    code = search.main(["--arch", "siamese", "--data", catalogue, "--out", out, "--max-trials", "2",
                        "--fixed", "margin=0.3", "--fixed", "loss=triplet", "--fixed", "mining=top-k",
                        "--fixed", "top_k=0.1", "--space", str(space),
                        "--compare-defaults", *TINY])
    assert code == 0, capsys.readouterr().err
    for trial in sorted(os.listdir(os.path.join(out, "search", "runs"))):
        config = json.load(open(os.path.join(out, "search", "runs", trial, "config.json")))
        assert config["margin"] == 0.3 and config["loss"] == "triplet" and config["embedding_dim"] == 32
        assert config["mining"] == "top-k" and config["top_k"] == 0.1  # conditional ones, fixed under their condition
        assert 0.001 <= config["lr"] <= 0.002
    summary = json.load(open(os.path.join(out, "search.json")))
    assert summary["defaults"]["epochs"] == 1 and 0 <= summary["defaults"]["objective"] <= 1
    assert "(defaults: " in capsys.readouterr().out


def test_hypermodel_builds_with_visnet_trains_builders_and_applies_the_space():
    from tuning.tuner import VisnetHyperModel
    from visnet.training.config import TrainConfig

    base = TrainConfig(arch="capsule", data="unused", image_size=(32, 32), epochs=3)
    model = VisnetHyperModel(base, {"embedding_dim": 64, "capsule_dim": 8, "routings": 2})
    hp = keras_tuner.HyperParameters()
    built = model.build(hp)
    assert built.output.shape[-1] == 64
    config = model.config(hp)
    assert config.arch_options == {"capsule_dim": 8, "routings": 2} and config.margin is not None
    assert {"lr", "margin", "mining"} <= set(hp.values)
    hp.values["tuner/epochs"] = 2
    assert model.config(hp).epochs == 2  # Hyperband's budget


def test_errors_name_the_bad_setting(catalogue, tmp_path, capsys):
    from tuning import search
    from tuning.tuner import VisnetHyperModel, make_tuner
    from visnet.training.config import TrainConfig

    with pytest.raises(ValueError, match="never the loss"):
        make_tuner("random", VisnetHyperModel(TrainConfig(arch="siamese", data="x")), objective="loss",
                   directory=str(tmp_path))
    with pytest.raises(SystemExit):
        search.main(["--arch", "siamese", "--data", catalogue, "--out", str(tmp_path), "--objective", "loss"])
    capsys.readouterr()
    base = ["--data", catalogue, "--out", str(tmp_path / "x")]
    assert search.main(["--arch", "nope", *base]) == 2
    assert "nope" in capsys.readouterr().err
    assert search.main(["--arch", "siamese", *base, "--val", "none"]) == 2
    assert "nothing to score" in capsys.readouterr().err
    bad = tmp_path / "space.json"
    bad.write_text('{"lr": {"min": 1}}')
    assert search.main(["--arch", "siamese", *base, "--space", str(bad)]) == 2
    assert "needs min and max" in capsys.readouterr().err
    assert search.main(["--arch", "siamese", *base, "--train-option", "colour=red"]) == 2
    assert "not a visnet.train setting" in capsys.readouterr().err
    assert search.main(["--arch", "siamese", *base, "--fixed", "routings=3"]) == 2
    assert "search space has no routings" in capsys.readouterr().err


@pytest.mark.slow
def test_a_search_killed_mid_trial_continues_that_trial_from_its_checkpoint(catalogue, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = str(tmp_path / "search")
    args = [sys.executable, "-m", "tuning.search", "--arch", "siamese", "--data", catalogue, "--out", out,
            "--max-trials", "1", *TINY]
    args[args.index("--epochs") + 1] = "4"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    state = os.path.join(out, "search", "runs", "trial_0", "state.json")
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not os.path.exists(state):
            time.sleep(0.05)
        assert os.path.exists(state), "the first epoch never finished"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = json.load(open(state))["epochs_done"]
    assert 1 <= done < 4
    finished = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    trial = json.load(open(os.path.join(out, "search", "runs", "trial_0", "trial.json")))
    assert trial["resumed"] is True and trial["epochs"] == 4
    assert len(_history(os.path.join(out, "search", "runs", "trial_0"))) == 4
