import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from visnet import embed, evaluate, train
from visnet.training.config import TrainConfig
from visnet.training.data import PairBatches, TripletBatches
from visnet.training.trainer import resolve_loss
from visnet.training.trainer import train as train_run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# Tiny settings that learn in a few dozen steps. Trunks without batch norm where it matters:
# after 30 steps its moving statistics are still near their initial values.
TINY = {
    "siamese": dict(backbone="koch", backbone_options={"width": 4}, embedding_dim=16, mining="batch-all"),
    "visnet": dict(backbone="tiny", backbone_options={"width": 8}, embedding_dim=16,
                   arch_options={"deep_dim": 32, "shallow_filters": 8}),
    "capsule": dict(embedding_dim=16, arch_options={"filters": [8, 16], "primary_capsules": 4, "primary_dim": 4,
                                                    "capsule_dim": 4, "routings": 2}),
    "protonet": dict(backbone="conv4", backbone_options={"width": 8}, k=4, shots=2),
    # The hybrid starts from HOG's figures (the untrained tower has 90% of the distance): it
    # needs more steps to show what the tower adds.
    "hybrid": dict(backbone="koch", backbone_options={"width": 4}, embedding_dim=16, mining="batch-all",
                   loss="triplet", arch_options={"hog_weight": 0.1}, epochs=8),
}


def tiny_config(catalogue, out, arch="siamese", **overrides):
    options = {**TINY[arch], **overrides}
    defaults = dict(arch=arch, data=catalogue, out=str(out), image_size=(64, 48), val="images:0.34", epochs=4,
                    steps_per_epoch=8, p=6, k=3, lr=3e-3, augment=False)
    return TrainConfig(**{**defaults, **options})


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(TINY))
def test_each_architecture_learns_on_the_generated_catalogue(arch, catalogue, tmp_path):
    run = train_run(tiny_config(catalogue, tmp_path / arch, arch), progress=False)
    history = json.load(open(os.path.join(run.path, "state.json")))["history"]
    assert len(history) == run.config.epochs
    # Batch-all losses average over the triplets still active, so they are noisy: the later
    # half of training must reach below the first epoch's loss.
    assert min(h["loss"] for h in history[len(history) // 2:]) < history[0]["loss"]
    assert max(h["val_mAP"] for h in history) > run.info["untrained"]["val_mAP"] + 0.03
    assert {"val_recall@1", "val_recall@5", "images_per_second"} <= set(history[-1])


@pytest.fixture(scope="module")
def trained(catalogue, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "siamese"
    return train_run(tiny_config(catalogue, out, epochs=2, steps_per_epoch=4), progress=False)


def test_a_run_directory_has_everything(trained):
    files = set(os.listdir(trained.path))
    assert {"config.json", "run.json", "state.json", "best.keras", "last-epoch0002.keras", "history.csv", "logs"} <= files
    assert TrainConfig.load(os.path.join(trained.path, "config.json")).arch == "siamese"
    assert trained.info["loss"] == {"name": "triplet", "margin": 0.2, "mining": "batch-all"}
    assert trained.info["image_spec"]["normalization"] == "unit"
    assert len(open(os.path.join(trained.path, "history.csv")).read().splitlines()) == 3
    assert os.listdir(os.path.join(trained.path, "logs"))  # TensorBoard events
    embedder = trained.embedder()
    vectors = embedder(np.random.default_rng(0).uniform(0, 1, (3, 64, 48, 3)).astype("float32"))
    assert vectors.shape == (3, 16)


def test_embed_and_evaluate_a_run(trained, catalogue, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    assert embed.main(["--run", trained.path, "--data", catalogue, "--out", str(out), "--no-progress"]) == 0
    saved = np.load(out)
    assert saved["embeddings"].shape == (108, 16) and len(saved["labels"]) == len(saved["paths"]) == 108
    results = tmp_path / "results.json"
    assert evaluate.main(["--run", trained.path, "--data", catalogue, "--episodes", "5", "--no-progress",
                          "--out", str(results)]) == 0
    figures = json.loads(results.read_text())
    assert figures["embedder"]["name"] == f"run:{os.path.basename(trained.path)}"
    assert 0 < figures["open_set"]["mAP"] <= 1
    capsys.readouterr()
    assert evaluate.main(["--run", str(tmp_path), "--data", catalogue]) == 2
    assert "is not a visnet run" in capsys.readouterr().err
    # A HOG pathway added after training: 16 learned + 7 x 5 blocks x 36 HOG values at 64x48.
    fused = tmp_path / "fused.npz"
    assert embed.main(["--run", trained.path, "--data", catalogue, "--out", str(fused), "--no-progress",
                       "--hog-weight", "0.5"]) == 0
    vectors = np.load(fused)["embeddings"]
    assert vectors.shape == (108, 16 + 1260)
    np.testing.assert_allclose(vectors[:, :16], np.sqrt(0.5) * saved["embeddings"], atol=1e-5)
    assert evaluate.main(["--run", trained.path, "--data", catalogue, "--episodes", "5", "--no-progress",
                          "--hog-weight", "0.5", "--out", str(results)]) == 0
    assert json.loads(results.read_text())["embedder"]["name"].endswith("+hog0.5")
    capsys.readouterr()
    assert evaluate.main(["--run", trained.path, "--data", catalogue, "--hog-weight", "1.5"]) == 2
    assert "hog_weight=1.5" in capsys.readouterr().err
    assert evaluate.main(["--embedder", "hog", "--data", catalogue, "--hog-weight", "0.5"]) == 2
    assert "--hog-weight applies to --run" in capsys.readouterr().err


def test_pair_and_triplet_batches_have_the_loss_layout():
    labels = np.repeat(np.arange(5), 4)
    from visnet.data.samplers import PairSampler, TripletSampler

    pairs = PairBatches(PairSampler(labels, 40, p_same=0.5, seed=0), 8).epoch(0)
    assert pairs.shape == (5, 16)
    first, second, same = PairSampler(labels, 40, p_same=0.5, seed=0).epoch(0)
    np.testing.assert_array_equal(pairs[0, :8], first[:8])
    np.testing.assert_array_equal(pairs[0, 8:], second[:8])
    triplets = TripletBatches(TripletSampler(labels, 30, seed=0), 5).epoch(1)
    assert triplets.shape == (6, 15)
    a, p, n = triplets[0, :5], triplets[0, 5:10], triplets[0, 10:]
    assert np.all(labels[a] == labels[p]) and np.all(labels[a] != labels[n])


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [dict(loss="normsoftmax", mining=None, scale=10.0),
                                       dict(loss="contrastive", mining="none", batch_size=18),
                                       dict(mining="none", batch_size=18),
                                       dict(loss="contrastive", mining="batch-all")])
def test_pair_and_explicit_triplet_training(overrides, catalogue, tmp_path):
    run = train_run(tiny_config(catalogue, tmp_path / "run", epochs=1, steps_per_epoch=3, **overrides), progress=False)
    assert run.info["batch_size"] == 18
    model = run.model()  # any training head is dropped
    assert len(model.outputs) == 1 and model.output.shape == (None, 16)
    assert len(json.load(open(os.path.join(run.path, "state.json")))["history"]) == 1


def test_loss_resolution():
    config = TrainConfig(arch="visnet", data="x", margin=0.5)
    assert resolve_loss(config) == {"name": "hinge", "gap": 0.5, "mining": "semi-hard"}
    config = TrainConfig(arch="siamese", data="x", loss="contrastive", margin=2.0)
    assert resolve_loss(config) == {"name": "contrastive", "margin": 2.0, "layout": "halves"}
    config = TrainConfig(arch="protonet", data="x", k=6)
    assert resolve_loss(config) == {"name": "prototypical", "shots": 3}
    assert resolve_loss(TrainConfig(arch="visnet", data="x")) == {"name": "hinge", "gap": 1.0, "mining": "semi-hard"}
    with pytest.raises(ValueError, match="The prototypical loss does not use margin"):
        resolve_loss(TrainConfig(arch="protonet", data="x", margin=0.3))


def cli(capsys, *argv):
    code = train.main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--arch", "resnet"], "Unknown architecture: 'resnet'"),
    (["--k", "1", "--p", "4"], "k=1 with a triplet loss gives no positive pair"),
    (["--p", "20"], "p=20, but the training data has"),
    (["--p", "8", "--k", "20"], "is larger than the 81 training images"),
    (["--image-size", "24x24", "--backbone", "vgg16"], "Images of 24x24 are too small for the vgg16 backbone"),
    (["--arch", "capsule", "--backbone", "vgg16"], "has its own feature block"),
    (["--arch", "protonet", "--k", "3", "--shots", "3"], "needs k > shots"),
    (["--val", "classes:2"], "val must be classes:F"),
    (["--augment-option", "crop=0"], "crop must be in (0, 1]"),
    (["--loss", "arcface"], "loss must be one of"),
    (["--p", "1"], "P x K batches need p >= 2"),
    (["--margin", "-1"], "margin must be > 0. Received: margin=-1"),
    (["--loss", "contrastive", "--batch-size", "1"], "batch_size must be >= 2. Received: batch_size=1"),
    (["--mining", "none", "--batch-size", "2"], "Explicit triplet batches need batch_size >= 3"),
    (["--patience", "3", "--val", "none"], "patience needs a validation set"),
    (["--schedule", "constant", "--warmup-epochs", "1"], "warmup_epochs needs schedule=cosine"),
    (["--cpu-replicas", "2"], "cpu_replicas > 1 only applies to strategy=mirrored"),
    (["--val", "images:0.05"], "a class needs about 40+ images"),
])
def test_bad_combinations_are_refused_by_name(argv, message, catalogue, tmp_path, capsys):
    base = ["--data", catalogue, "--out", str(tmp_path / "r"), "--image-size", "32x32", "--backbone", "tiny",
            "--epochs", "1", "--no-progress", "--val", "classes:0.25"]
    if "--arch" in argv and argv[argv.index("--arch") + 1] == "capsule" and "--backbone" in argv:
        base = [a for a in base if a not in ("--backbone", "tiny")]
    code, err = cli(capsys, *base, *argv)
    assert code == 2
    assert message in err


def test_existing_runs_and_resume_errors(trained, tmp_path, capsys, catalogue):
    code, err = cli(capsys, "--data", catalogue, "--out", trained.path)
    assert code == 2 and "already holds a run: use --resume" in err
    code, err = cli(capsys, "--out", str(tmp_path / "none"), "--resume")
    assert code == 2 and "no config.json" in err
    code, err = cli(capsys, "--out", trained.path, "--resume", "--epochs", "5")
    assert code == 2 and "decays its learning rate over 2 epochs (cosine)" in err
    code, err = cli(capsys, "--out", trained.path, "--resume")
    assert code == 0 and "has finished after epoch 2: nothing to resume" in err


@pytest.mark.slow
def test_resume_extends_a_constant_schedule_and_respects_early_stopping(catalogue, tmp_path, capsys):
    out = tmp_path / "grow"
    base = ["--data", catalogue, "--out", str(out), "--image-size", "32x24", "--backbone", "tiny",
            "--backbone-option", "width=4", "--embedding-dim", "8", "--p", "6", "--k", "2", "--steps-per-epoch", "2",
            "--val", "classes:0.25", "--schedule", "constant", "--epochs", "1", "--no-progress"]
    assert cli(capsys, *base)[0] == 0
    code, err = cli(capsys, "--out", str(out), "--resume", "--epochs", "2", "--no-progress")
    assert code == 0 and "resuming" in err
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 2
    assert TrainConfig.load(str(out / "config.json")).epochs == 2
    state = json.loads((out / "state.json").read_text())
    state["stopped_early"] = True
    (out / "state.json").write_text(json.dumps(state))
    code, err = cli(capsys, "--out", str(out), "--resume", "--epochs", "4", "--no-progress")
    assert code == 0 and "stopped early after epoch 2: nothing to resume" in err


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    flags = {a.option_strings[-1] for a in train.build_parser()._actions} - {"--help"}
    assert len(flags) >= 40
    for flag in flags:
        assert f"  {flag}" in text, flag


def run_cli(*args, **kwargs):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}  # one worker: no cluster
    return subprocess.Popen([sys.executable, "-m", "visnet.train", *args], cwd=ROOT, env={**env, "PYTHONPATH": ROOT},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(catalogue, tmp_path):
    out = tmp_path / "killed"
    args = ["--data", catalogue, "--out", str(out), "--image-size", "32x24", "--backbone", "tiny",
            "--backbone-option", "width=4", "--embedding-dim", "8", "--p", "6", "--k", "3",
            "--steps-per-epoch", "20", "--epochs", "6", "--val", "classes:0.25", "--no-progress"]
    process = run_cli(*args)
    state = out / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if state.exists() and json.loads(state.read_text())["epochs_done"] >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1][-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads(state.read_text())["epochs_done"]
    assert 2 <= killed_at < 6
    resumed = run_cli("--out", str(out), "--resume", "--no-progress")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    assert f"resuming {out} after epoch {killed_at}" in err
    final = json.loads(state.read_text())
    assert final["epochs_done"] == 6
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3, 4, 5, 6]
    assert sorted(p for p in os.listdir(out) if p.startswith("last-")) == ["last-epoch0006.keras"]
    import keras

    model = keras.models.load_model(out / "last-epoch0006.keras")
    assert int(model.optimizer.iterations.numpy()) == 6 * 20  # optimizer state carried over the kill


@pytest.mark.slow
def test_pair_layouts_are_refused_across_replicas(catalogue, tmp_path):
    process = run_cli("--data", catalogue, "--out", str(tmp_path / "r"), "--image-size", "32x24", "--backbone", "tiny",
                      "--mining", "none", "--batch-size", "12", "--strategy", "mirrored", "--cpu-replicas", "2")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2 and "triplets batches cannot be split across 2 replicas" in err


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["--strategy", "mirrored", "--cpu-replicas", "2"],
                                   ["--strategy", "multiworker"], ["--mixed-precision"]])
def test_distribution_strategies_and_mixed_precision(extra, catalogue, tmp_path):
    out = tmp_path / "dist"
    process = run_cli("--data", catalogue, "--out", str(out), "--image-size", "32x24", "--backbone", "tiny",
                      "--backbone-option", "width=4", "--embedding-dim", "8", "--p", "6", "--k", "2",
                      "--steps-per-epoch", "3", "--epochs", "1", "--val", "classes:0.25", "--no-progress", *extra)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    history = json.loads((out / "state.json").read_text())["history"]
    assert np.isfinite(history[0]["loss"]) and "val_mAP" in history[0]
    info = json.loads((out / "run.json").read_text())
    assert info["replicas"] == (2 if "mirrored" in extra else 1)
    if "--mixed-precision" in extra:
        import keras

        model = keras.models.load_model(out / "best.keras", compile=False)
        assert model.get_layer("projection").dtype_policy.name == "mixed_float16"
        assert model.output.dtype == "float32"
