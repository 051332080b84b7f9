"""MAML: the first-order update by hand, the second-order gradient by finite differences, a toy task learned."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from visnet.training.maml import MAML


def _two_parameter_model(w):
    """logits = [w0 * x, w1 * x] for a scalar x: two parameters, two classes."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2, use_bias=False)])
    model.layers[0].kernel.assign(np.array([w], np.float32))
    return model


def _ce_grad(w, x, y):
    """d/dw of the softmax cross-entropy of logits w * x at label y (by hand)."""
    logits = np.array(w) * x
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return (p - np.eye(2)[y]) * x


def _ce(w, x, y):
    logits = np.array(w) * x
    return float(np.log(np.exp(logits).sum()) - logits[y])


EPISODE = (np.array([[1.5]], np.float32), np.array([1]), np.array([[-0.7]], np.float32), np.array([0]))


def test_first_order_update_matches_the_hand_computed_one():
    w, alpha, beta = [0.3, -0.2], 0.5, 0.1
    model = _two_parameter_model(w)
    maml = MAML(model, ways=2, inner_steps=1, inner_lr=alpha, first_order=True,
                optimizer=keras.optimizers.SGD(beta))
    sx, sy, qx, qy = EPISODE
    adapted = np.array(w) - alpha * _ce_grad(w, sx[0, 0], sy[0])
    expected = np.array(w) - beta * _ce_grad(adapted, qx[0, 0], qy[0])  # FOMAML: the query gradient at θ'
    loss, _ = maml.meta_step([EPISODE])
    np.testing.assert_allclose(model.layers[0].kernel.numpy()[0], expected, atol=1e-6)
    assert loss == pytest.approx(_ce(adapted, qx[0, 0], qy[0]), abs=1e-6)


def test_second_order_gradient_matches_finite_differences():
    w, alpha = np.array([0.3, -0.2]), 0.5
    maml = MAML(_two_parameter_model(list(w)), ways=2, inner_steps=2, inner_lr=alpha)
    sx, sy, qx, qy = EPISODE

    def objective(v):
        for _ in range(2):
            v = v - alpha * _ce_grad(v, sx[0, 0], sy[0])
        return _ce(v, qx[0, 0], qy[0])

    eps = 1e-4
    numeric = [(objective(w + eps * e) - objective(w - eps * e)) / (2 * eps) for e in np.eye(2)]
    _, _, gradients = maml.meta_gradients([EPISODE])
    np.testing.assert_allclose(gradients[0].numpy()[0], numeric, atol=1e-4)
    first = MAML(_two_parameter_model(list(w)), ways=2, inner_steps=2, inner_lr=alpha, first_order=True)
    assert not np.allclose(first.meta_gradients([EPISODE])[2][0].numpy()[0], numeric, atol=1e-4)


def _task(rng, shots=5, queries=10, dims=20):
    """2-way task in 20 dimensions: one of two dimensions (which, and its sign, drawn per task)
    tells the classes apart; the other 19 are noise. From a random start two small steps on 10
    examples cannot find it; meta-learning finds where to look."""
    sign, informative = rng.choice([-1.0, 1.0]), rng.integers(0, 2)

    def draw(n):
        y = np.repeat([0, 1], n)
        x = rng.normal(size=(2 * n, dims)).astype(np.float32)
        x[:, informative] = np.abs(x[:, informative]) * np.where(y == 1, sign, -sign)
        return x, y

    return (*draw(shots), *draw(queries))


@pytest.mark.parametrize("first_order, batch_norm", [(False, False), (True, False), (True, True)])
def test_a_toy_task_beats_chance_after_a_few_meta_steps(first_order, batch_norm):
    keras.utils.set_random_seed(0)
    hidden = [keras.layers.Dense(32), keras.layers.BatchNormalization(), keras.layers.ReLU()] if batch_norm else \
        [keras.layers.Dense(32, activation="relu")]
    # With batch norm, evaluation must use batch statistics: meta-training never updates the moving ones.
    model = keras.Sequential([keras.Input((20,)), *hidden, keras.layers.Dense(2)])
    maml = MAML(model, ways=2, inner_steps=2, inner_lr=0.3, outer_lr=1e-2, first_order=first_order)
    rng = np.random.default_rng(0)
    test_tasks = [_task(np.random.default_rng(1000 + i)) for i in range(30)]
    before = np.mean([maml.evaluate_episode(*t) for t in test_tasks])
    for _ in range(100):
        maml.meta_step([_task(rng) for _ in range(4)])
    after = np.mean([maml.evaluate_episode(*t) for t in test_tasks])
    assert before < 0.65 and after > 0.75 and after > before + 0.15, (before, after)  # chance is 0.5


def test_settings_are_checked():
    model = _two_parameter_model([0.0, 0.0])
    with pytest.raises(ValueError, match="ways must be >= 2"):
        MAML(model, ways=1)
    with pytest.raises(ValueError, match="has 2 outputs but ways=5"):
        MAML(model, ways=5)
    with pytest.raises(ValueError, match="inner_steps must be >= 1"):
        MAML(model, ways=2, inner_steps=0)
    with pytest.raises(ValueError, match="meta_step needs at least one episode"):
        MAML(model, ways=2).meta_step([])
    assert tf.executing_eagerly()


@pytest.mark.slow
def test_arch_maml_trains_a_run_that_evaluates(catalogue, tmp_path, capsys):
    import csv
    import json
    import os

    from visnet import evaluate, train
    from visnet.training.runs import Run

    out = str(tmp_path / "maml")
    args = ["--arch", "maml", "--data", catalogue, "--out", out, "--image-size", "32x24", "--backbone", "koch",
            "--backbone-option", "width=4", "--p", "3", "--k", "3", "--epochs", "2", "--steps-per-epoch", "2",
            "--arch-option", "meta_batch=2", "--arch-option", "first_order=true", "--val", "images:0.34",
            "--no-progress"]
    assert train.main(args) == 0, capsys.readouterr().err
    state = json.load(open(os.path.join(out, "state.json")))
    assert state["epochs_done"] == 2
    assert {"loss", "query_accuracy", "val_mAP", "val_episode_accuracy"} <= set(state["history"][-1])
    best = max(state["history"], key=lambda epoch: epoch["val_episode_accuracy"])  # MAML's own rule selects
    assert state["best_epoch"] == best["epoch"]
    info = json.load(open(os.path.join(out, "run.json")))
    assert info["loss"] == {"name": "maml", "ways": 3, "shots": 1, "queries": 2, "inner_steps": 1, "inner_lr": 0.4,
                            "first_order": True, "meta_batch": 2}
    model = Run(out).model()
    assert model.output.shape[-1] != 3  # the embedding, not the 3-way head
    assert evaluate.main(["--run", out, "--data", catalogue, "--episodes", "4", "--no-progress"]) == 0
    capsys.readouterr()
    # Stopped after epoch 1 and resumed: the same weights as the run that went straight through.
    split = str(tmp_path / "split")
    first = [*args]
    first[first.index("--out") + 1], first[first.index("--epochs") + 1] = split, "1"
    assert train.main(first) == 0, capsys.readouterr().err
    assert train.main(["--resume", "--out", split, "--epochs", "2", "--no-progress"]) == 0, capsys.readouterr().err
    assert "resuming after epoch 1" in "".join(capsys.readouterr())
    straight, resumed = (Run(path).model("last").get_weights() for path in (out, split))
    assert len(straight) == len(resumed) > 0
    for a, b in zip(straight, resumed):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with open(os.path.join(split, "history.csv")) as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1"]
    assert train.main([*args, "--resume"]) == 0
    assert "finished after epoch 2: nothing to resume" in "".join(capsys.readouterr())
    # A checkpoint without optimizer state (as written before MAML runs saved it) still resumes.
    last = os.path.join(split, json.load(open(os.path.join(split, "state.json")))["last"])
    keras.models.load_model(last, compile=False).save(last)
    assert train.main(["--resume", "--out", split, "--epochs", "3", "--no-progress"]) == 0
    assert "no optimizer state: the outer optimizer starts afresh" in "".join(capsys.readouterr())
    assert json.load(open(os.path.join(split, "state.json")))["epochs_done"] == 3
    bad = [*args, "--shots", "4"]
    bad[bad.index("--out") + 1] = str(tmp_path / "bad")
    assert train.main(bad) == 2
    assert "must exceed shots" in capsys.readouterr().err
