import json
import os
import re
import shutil

import numpy as np
import pytest
from helpers import write_text

from visnet import evaluate


def hog_parts(catalogue, *id_lists):
    """(HOG vectors, labels) of the catalogue's photos with each list of ids, as `evaluate` embeds them."""
    from visnet.baselines import embedders
    from visnet.data.readers import load_dataset
    from visnet.evaluation.embedding import embed_dataset

    dataset, embedder = load_dataset(catalogue), embedders.get("hog", image_size=(64, 48))
    parts = []
    for ids in id_lists:
        records, vectors = embed_dataset(embedder, dataset.select(list(ids), "part"), progress=False)
        parts.append((vectors, [r.label for r in records]))
    return parts


def run_cli(capsys, *argv):
    code = evaluate.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_hog_on_the_generated_catalogue(catalogue, tmp_path, capsys):
    out = tmp_path / "results.json"
    code, stdout, _ = run_cli(capsys, "--data", catalogue, "--episodes", "20", "--classifiers", "prototype,1nn",
                              "--no-progress", "--out", str(out))
    assert code == 0
    results = json.loads(out.read_text())
    assert results["embedder"]["name"] == "hog" and results["embedder"]["image_size"] == [64, 48]
    closed, open_ = results["closed_set"], results["open_set"]
    assert closed["classes"] == 12 and closed["train"] + closed["test"] == 108
    assert open_["support"] + open_["query"] == 5 * 9
    # 12 visually distinct classes: HOG must beat chance (1/12, and 1/5 for episodes) by far.
    assert closed["knn_accuracy"]["1"] > 0.4
    assert closed["errors"] == round((1 - closed["knn_accuracy"]["1"]) * closed["test"])
    counts = [c["count"] for c in closed["confusions"]]
    assert 0 < sum(counts) <= closed["errors"] and counts == sorted(counts, reverse=True)
    assert all(c["label"] != c["predicted"] for c in closed["confusions"])
    assert 0.3 < open_["mAP"] <= 1 and open_["recall"]["1"] >= open_["mAP"] - 0.3
    tasks = {(r["classifier"], r["ways"], r["shots"]): r for r in results["few_shot"]}
    assert set(tasks) == {(c, 5, s) for c in ("prototype", "1nn") for s in (1, 5)}
    assert tasks[("prototype", 5, 5)]["accuracy"] > 0.5 and tasks[("prototype", 5, 5)]["episodes"] == 20
    assert tasks[("prototype", 5, 1)]["accuracy"] == tasks[("1nn", 5, 1)]["accuracy"]  # same episodes
    assert "Closed-set k-NN accuracy" in stdout and "Most frequent 1-NN mistakes" in stdout and "mAP" in stdout and "5-way 5-shot" in stdout


def test_bad_images_are_skipped_counted_and_reported(catalogue, tmp_path, capsys):
    copy = tmp_path / "cat"
    shutil.copytree(catalogue, copy)
    broken = sorted(os.listdir(copy / "images"))[:2]
    write_text(copy / "images" / broken[0])
    os.remove(copy / "images" / broken[1])
    out = tmp_path / "r.json"
    code, _, stderr = run_cli(capsys, "--data", str(copy), "--episodes", "5", "--no-progress", "--out", str(out))
    assert code == 0
    assert "1 not an image" in stderr and "1 missing file" in stderr
    skipped = json.loads(out.read_text())["skipped"]
    assert skipped["not an image"]["count"] == 1 and skipped["missing file"]["count"] == 1
    assert json.loads(out.read_text())["counts"]["embedded"] == 106


def test_pixels_embedder_options_and_a_folder_without_protocol(catalogue, tmp_path, capsys):
    folder = tmp_path / "folder"
    for line in open(os.path.join(catalogue, "manifest.csv")).read().splitlines()[1:]:
        path, label = line.split(",")[0], line.split(",")[3]
        os.makedirs(folder / label, exist_ok=True)
        shutil.copy(os.path.join(catalogue, path), folder / label)
    out = tmp_path / "pixels.json"
    code, stdout, stderr = run_cli(capsys, "--data", f"folder:{folder}", "--embedder", "pixels",
                                   "--embedder-option", "grey=true", "--ways", "3", "--shots", "1",
                                   "--queries", "3", "--episodes", "5", "--no-progress", "--out", str(out))
    assert code == 0, stderr
    assert "no protocol.json: made one" in stderr
    assert "3-way 1-shot" in stdout
    # Raw pixels keep their own small size; --image-size overrides it.
    assert json.loads(out.read_text())["embedder"] == {"name": "pixels", "image_size": [32, 24], "grey": True}
    code, _, _ = run_cli(capsys, "--data", catalogue, "--embedder", "pixels", "--image-size", "16x12",
                         "--episodes", "2", "--no-progress", "--out", str(out))
    assert code == 0 and json.loads(out.read_text())["embedder"]["image_size"] == [16, 12]


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    flags = {a.option_strings[-1] for a in evaluate.build_parser()._actions} - {"--help"}
    assert len(flags) >= 19
    for flag in flags:
        assert re.search(rf"^\s+{re.escape(flag)}\b(?!-)", help_text, re.M), flag
    assert re.search(r"--embedder EMBEDDER\s+embedder: hog, pixels", help_text)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "/no/such/place"], "Data path not found: /no/such/place"),
        (["--data", "CATALOGUE", "--embedder", "sift"], "Unknown embedder: 'sift'. Available: hog, pixels"),
        (["--data", "CATALOGUE", "--classifiers", "svm"], "Unknown few-shot classifier: 'svm'"),
        (["--data", "CATALOGUE", "--image-size", "100x90"], "Image height 100 does not fit HOG blocks"),
        (["--data", "CATALOGUE", "--episodes", "0"], "--episodes must be >= 1. Received: 0"),
        (["--data", "CATALOGUE", "--embedder-option", "colour=1"], "The embedder 'hog' does not take colour. It takes: image_size, block"),
        (["--data", "CATALOGUE", "--embedder-option", "block=x"], "block must be an integer >= 1. Received: block='x'"),
        (["--data", "CATALOGUE", "--embedder", "pixels", "--embedder-option", "grey=maybe"], "grey must be true or false"),
        (["--data", "CATALOGUE", "--embedder-option", "image_size=64"], "image_size must be (height, width)"),
        (["--data", "CATALOGUE", "--ways", "1"], "--ways must be >= 2"),
        (["--data", "CATALOGUE", "--seed", "-1"], "--seed must be >= 0. Received: -1"),
        (["--data", "CATALOGUE", "--gallery-smoothing", "-2"], "--gallery-smoothing must be >= 0. Received: -2"),
        (["--data", "CATALOGUE", "--gallery-smoothing", "auto"], "--gallery-smoothing auto chooses K on the photos"),
        (["--data", "CATALOGUE", "--out", "/tmp"], "--out must be a file, not a directory"),
    ],
)
def test_bad_arguments_are_clear_errors(catalogue, capsys, argv, message):
    argv = [catalogue if a == "CATALOGUE" else a for a in argv]
    code, _, stderr = run_cli(capsys, *argv, "--no-progress")
    assert code == 2
    assert message in stderr


def test_malformed_flags_exit_with_usage(capsys):
    for argv in (["--data", "x", "--ways", "five"], ["--data", "x", "--metric", "manhattan"], []):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(argv)
        assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--data", "x", "--gallery-smoothing", "some"])
    assert exit_info.value.code == 2
    assert "expected an integer K >= 0 or auto, got 'some'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--data", "x", "--expansion", "qe=two"])
    assert exit_info.value.code == 2
    assert "qe must be an integer. Received: qe='two'" in capsys.readouterr().err


def test_expansion_reranks_open_set_retrieval_only_and_matches_the_reference(catalogue, tmp_path, capsys):

    from visnet.data.protocol import Protocol
    from visnet.evaluation.retrieval import retrieval_metrics
    from visnet.index.expansion import Expansion

    plain, reranked = tmp_path / "plain.json", tmp_path / "reranked.json"
    common = ["--data", catalogue, "--episodes", "10", "--no-progress"]
    assert run_cli(capsys, *common, "--out", str(plain))[0] == 0
    code, stdout, _ = run_cli(capsys, *common, "--expansion", "qe=2,dba=3,alpha=1", "--out", str(reranked))
    assert code == 0 and "re-ranked with qe=2,dba=3,alpha=1" in stdout
    a, b = json.loads(plain.read_text()), json.loads(reranked.read_text())
    assert "expansion" not in a["open_set"] and b["open_set"]["expansion"] == "qe=2,dba=3,alpha=1"
    assert a["closed_set"] == b["closed_set"] and a["few_shot"] == b["few_shot"]
    # The same figure by hand: HOG vectors of the support and query images, expanded, ranked.
    protocol = Protocol.load(os.path.join(catalogue, "protocol.json"))
    (q, q_labels), (g, g_labels) = hog_parts(catalogue, protocol.query_ids, protocol.support_ids)
    q, g = Expansion(qe=2, dba=3, alpha=1.0).apply(q, g)
    expected = retrieval_metrics(q, q_labels, g, g_labels)
    assert b["open_set"]["mAP"] == pytest.approx(expected.mean_average_precision, abs=1e-9)
    assert b["open_set"]["mAP"] != pytest.approx(a["open_set"]["mAP"], abs=1e-6)


def test_gallery_smoothing_changes_closed_set_knn_only_and_matches_the_reference(catalogue, tmp_path, capsys):
    from visnet.data.protocol import Protocol
    from visnet.evaluation.classification import knn_predict, smooth_gallery

    plain, smoothed = tmp_path / "plain.json", tmp_path / "smoothed.json"
    common = ["--data", catalogue, "--episodes", "10", "--no-progress"]
    assert run_cli(capsys, *common, "--out", str(plain))[0] == 0
    code, stdout, _ = run_cli(capsys, *common, "--gallery-smoothing", "2", "--out", str(smoothed))
    assert code == 0 and "each training photo averaged with its 2 nearest of its label" in stdout
    a, b = json.loads(plain.read_text()), json.loads(smoothed.read_text())
    assert b["closed_set"]["gallery_smoothing"] == 2 and "gallery_smoothing" not in a["closed_set"]
    assert a["open_set"] == b["open_set"] and a["few_shot"] == b["few_shot"]
    protocol = Protocol.load(os.path.join(catalogue, "protocol.json"))
    (train, train_labels), (test, test_labels) = hog_parts(catalogue, protocol.train_ids, protocol.test_ids)
    predicted = knn_predict(smooth_gallery(train, train_labels, 2), train_labels, test, (1, 5))
    for k in (1, 5):
        assert b["closed_set"]["knn_accuracy"][str(k)] == pytest.approx(np.mean(predicted[k] == np.array(test_labels)))


def test_gallery_smoothing_auto_chooses_k_on_the_photos_the_run_held_out(catalogue, siamese_run, tmp_path, capsys):
    import dataclasses

    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.classification import choose_smoothing, knn_accuracy, smooth_gallery
    from visnet.evaluation.embedding import embed_dataset
    from visnet.training.config import TrainConfig
    from visnet.training.data import read_training_data
    from visnet.training.runs import Run
    from visnet.training.trainer import train

    config = TrainConfig(arch="siamese", data=catalogue, split="closed-set", out=str(tmp_path / "closed"),
                         image_size=(32, 24), backbone="tiny", embedding_dim=8, p=4, k=2, val="images:0.34",
                         epochs=1, steps_per_epoch=1, augment=False)
    train(config, progress=False)
    out = tmp_path / "auto.json"
    code, stdout, _ = run_cli(capsys, "--data", catalogue, "--run", config.out, "--gallery-smoothing", "auto",
                              "--episodes", "5", "--no-progress", "--out", str(out))
    assert code == 0
    closed = json.loads(out.read_text())["closed_set"]
    held_out = set(read_training_data(config, progress=False).val.ids)
    # The reference: the run's embeddings of the closed-set training split, K chosen on the photos it held out.
    train_records, test_records = Protocol.load(os.path.join(catalogue, "protocol.json")).closed_set(
        load_dataset(catalogue, check="none"), missing="skip")
    embedder = Run(config.out).embedder("best")
    kept, train_x = embed_dataset(embedder, train_records, progress=False)
    kept_test, test_x = embed_dataset(embedder, test_records, progress=False)
    train_y, test_y = np.array([r.label for r in kept]), np.array([r.label for r in kept_test])
    mask = np.array([r.id in held_out for r in kept])
    chosen, grid = choose_smoothing(train_x, train_y, mask)
    assert closed["gallery_smoothing_choice"] == {"k": chosen, "validation_photos": len(held_out), "grid": grid}
    assert closed.get("gallery_smoothing", 0) == chosen
    expected = knn_accuracy(smooth_gallery(train_x, train_y, chosen), train_y, test_x, test_y, ks=(1,))[1]
    assert closed["knn_accuracy"]["1"] == pytest.approx(expected)
    assert f"as {len(held_out)} held-out training photos chose" in stdout
    code, _, stderr = run_cli(capsys, "--data", catalogue, "--run", siamese_run.path, "--gallery-smoothing", "auto",
                              "--no-progress")
    assert code == 2 and "Choosing the gallery smoothing needs closed-set runs" in stderr
    none_held = dataclasses.replace(config, out=str(tmp_path / "no-val"), val="none")
    other_held = dataclasses.replace(config, out=str(tmp_path / "other-val"), val="images:0.5")
    classes_held = dataclasses.replace(config, out=str(tmp_path / "class-val"), val="classes:0.34")
    for each in (none_held, other_held, classes_held):
        train(each, progress=False)
    code, _, stderr = run_cli(capsys, "--data", catalogue, "--run", classes_held.out, "--gallery-smoothing", "auto",
                              "--no-progress")
    assert code == 2 and "was trained with --val classes:0.34: choosing the gallery smoothing needs" in stderr
    moved = json.loads(open(os.path.join(classes_held.out, "config.json")).read())
    moved.update(val="images:0.34", data=str(tmp_path / "gone"))
    with open(os.path.join(classes_held.out, "config.json"), "w") as handle:
        json.dump(moved, handle)
    code, _, stderr = run_cli(capsys, "--data", catalogue, "--run", classes_held.out, "--gallery-smoothing", "auto",
                              "--no-progress")
    assert code == 2 and "which is not found from here: the photos it held out cannot be known" in stderr
    code, _, stderr = run_cli(capsys, "--data", catalogue, "--run", none_held.out, "--gallery-smoothing", "auto",
                              "--no-progress")
    assert code == 2 and "was trained with --val none: choosing the gallery smoothing needs photos held out" in stderr
    code, _, stderr = run_cli(capsys, "--data", catalogue, "--run", config.out, "--run", other_held.out,
                              "--gallery-smoothing", "auto", "--no-progress")
    assert code == 2 and f"{other_held.out} held out other photos than {config.out}" in stderr
