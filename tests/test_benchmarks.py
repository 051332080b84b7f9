"""The benchmark scripts that gather tables: quality (one `visnet.evaluate` per entry), speed
(gathered from the other reports) and the README's generated results section."""

import json
import os
import re
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@pytest.mark.slow
def test_quality_and_speed_tables(catalogue, siamese_run, tmp_path, capsys):
    from benchmarks import quality, speed

    runs_dir = os.path.dirname(siamese_run.path)  # the fixture's run is RUNS/siamese
    out = str(tmp_path / "results" / "quality")
    assert quality.main(["--data", catalogue, "--runs-dir", runs_dir, "--only", "HOG,siamese,hybrid",
                         "--episodes", "4", "--out", out]) == 0
    report = json.load(open(out + ".json"))
    assert [row["name"] for row in report["rows"]] == ["HOG", "siamese"]
    assert report["missing"] == [{"name": "hybrid", "run": os.path.join(runs_dir, "hybrid"),
                                  "made_by": "benchmarks/metric_learning.py"}]
    hog, run = report["rows"]
    assert 0 <= hog["open_set"]["mAP"] <= 1 and hog["cpu_seconds"] > 0 and run["run"]["epochs"] == 1
    assert run["arguments"] == "--run runs/siamese" and run["notes"]  # closed-set not held out: flagged
    text = open(out + ".md").read()
    assert "| HOG | `--embedder hog` |" in text
    assert re.search(r"\| siamese \| `--run runs/siamese` \| [\d.]+%\* \|", text)  # not held out: starred
    assert "hybrid (`benchmarks/metric_learning.py` trains it)" in text

    speed_out = str(tmp_path / "results" / "speed")
    assert speed.main(["--results-dir", str(tmp_path / "results"), "--out", speed_out]) == 0
    gathered = json.load(open(speed_out + ".json"))
    assert set(gathered["architectures"]) == {"HOG", "siamese"}
    assert "training_throughput" in gathered["missing"] and "quality" not in gathered["missing"]
    assert "| HOG | – | no training | no training |" in open(speed_out + ".md").read()
    assert speed.main(["--results-dir", str(tmp_path / "empty"), "--out", speed_out]) == 2
    assert "no source report" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quality.main(["--data", catalogue, "--only", "resnet9000"])


def test_the_readme_section_is_regenerated_from_the_results(tmp_path):
    from benchmarks import update_readme

    results = tmp_path / "results"
    results.mkdir()
    (results / "zeta.md").write_text("### zeta\n")
    (results / "quality.md").write_text("### quality\n")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results:begin -->\nold\n<!-- results:end -->\n\ntail\n")
    text = update_readme.update(str(readme), str(results))
    assert text.index("### quality") < text.index("### zeta") and "old" not in text and text.endswith("tail\n")
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="no <!-- results:begin -->"):
        update_readme.update(str(readme), str(results))


def test_every_report_records_its_host():
    """Hosts of one kind differ 3-4x in speed: each benchmark names the CPU it ran on."""
    import glob

    from benchmarks.common import host, machine

    m = machine()
    assert {"cpu_model", "cpus", "avx2", "avx512", "settings"} <= set(m) and m["cpus"] >= 1
    assert host(m).startswith(m["cpu_model"]) and ("AVX-512" in host(m))
    assert host({"cpus": 2}) == "2 CPUs (host not recorded)"
    scripts = [p for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "benchmarks", "*.py"))
               if os.path.basename(p) not in ("common.py", "update_readme.py", "__init__.py")]
    silent = [os.path.basename(p) for p in scripts
              if "machine()" not in open(p).read() and "header(" not in open(p).read()]
    assert scripts and silent == []


def _results(m_ap: float, closed: bool = True) -> dict:
    few = [{"ways": w, "shots": s, "classifier": "prototype", "accuracy": 0.5 + m_ap / 4, "ci95": 0.01}
           for w in (5, 16) for s in (1, 5)]
    return {"open_set": {"mAP": m_ap, "recall": {"1": 0.9, "5": 0.95}},
            "closed_set": {"knn_accuracy": {"1": 0.8}} if closed else {"skipped": "no closed set"},
            "few_shot": few}


def test_pretrained_table_puts_each_scratch_row_beside_its_pretrained_row(tmp_path):
    from benchmarks import pretrained
    from benchmarks.common import machine

    results_dir = tmp_path / "results"
    results_dir.mkdir()
    (results_dir / "quality.json").write_text(json.dumps({"rows": [
        {"name": "siamese", **_results(0.68), "run": {"backbone": "resnet18", "backbone_options": {"width": 64},
                                                      "input": "128x96", "train_seconds": 2340, "epochs": 14}}]}))
    recipe = {**pretrained.COMMON, **pretrained.RECIPES["effnet-siamese"]}
    row = {"name": "effnet-siamese", "recipe": recipe, "split": "open-set", "command": "python -m visnet.train ...",
           "train_seconds": 960, "epochs": 7, "best_epoch": 3, "results": _results(0.76)}
    report = {"command": "python benchmarks/pretrained.py", "machine": machine(), "rows": [
        {"name": "efficientnet-lite0 ImageNet, off the shelf (128x96)", "recipe": None, "command": "x",
         "results": _results(0.73)}, row,
        {**row, "name": "effnet-siamese@224x168", "eval_size": [224, 168], "results": _results(0.79, closed=False)}]}
    closed = _results(0.5)
    closed["closed_set"].update(test=50, errors=10, confusions=[{"label": "Tops", "predicted": "Tshirts", "count": 6},
                                                                 {"label": "Heels", "predicted": "Flats", "count": 2}])
    report["rows"].append({**row, "name": "effnet-closed", "split": "closed-set", "results": closed,
                           "recipe": {**pretrained.COMMON, **pretrained.RECIPES["effnet-closed"]}})
    lines = pretrained.markdown(report, str(results_dir)).splitlines()
    assert ("Closed-set 1-NN mistakes of `effnet-closed`: 10 of 50 test photos; the six most frequent pairs hold 8 "
            "(80%): Tops as Tshirts 6, Heels as Flats 2.") in lines
    table = [line for line in lines if line.startswith("| ")][1:]
    assert "off the shelf" in table[0] and "| 0.730 |" in table[0]
    assert table[1].startswith("| `siamese` | resnet18 w64 at 128x96, from scratch") and "| 0.680 |" in table[1]
    assert table[2].startswith("| `siamese` (`effnet-siamese`)") and "| 0.760 |" in table[2] and "80.0%*" in table[2]
    # effnet-siamese was measured before the whole-trunk fix: its training is marked and explained.
    assert "fine-tuned (its whole-trunk phase trained only the top 3 blocks: run before the fix of d6f2a23) |" in table[2]
    assert "d6f2a23" not in table[0] + table[1]
    fixed = pretrained.markdown({**report, "rows": [{**row, "whole_trunk_fix": True}]}, str(results_dir))
    assert "d6f2a23" not in fixed  # measured since the fix: not marked
    assert "run at 224x168" in table[3] and "| n/a |" in table[3]
    assert lines[2].startswith("Command: `python benchmarks/pretrained.py` on ")
    # A merged table names its latest call as such, not as the command that made every row.
    merged = pretrained.markdown({**report, "command": "python benchmarks/pretrained.py --recipes x --merge"},
                                 str(results_dir)).splitlines()
    assert merged[2].startswith("Rows from several calls, the `pretrained.py` lines of `make benchmark` (the later "
                                "ones with `--merge`, keeping the rows of the calls before); the latest: "
                                "`python benchmarks/pretrained.py --recipes x --merge` on ")
    # Training times compare only within one host: rows trained elsewhere are marked and named.
    other = {**machine(), "cpu_model": "Other CPU", "avx512": True}
    for r in report["rows"][:3]:
        r["machine"] = machine()
    report["rows"][3]["machine"] = other
    lines = pretrained.markdown(report, str(results_dir)).splitlines()
    table = [line for line in lines if line.startswith("| ")][1:]
    assert table[2].endswith("(best 3) |") and table[-1].endswith("(best 3) ‡ |")
    assert "(‡ on Other CPU, " in lines[2] and lines[2].endswith(", AVX-512: times compare only within one host).")
    # Each row names its own trunk: a Lite2 recipe and a Lite2 off-the-shelf row.
    lite2 = {**pretrained.COMMON, **pretrained.RECIPES["lite2-photo-288-all"]}
    report["rows"] += [{**row, "name": "lite2-photo-288-all", "recipe": lite2, "machine": machine()},
                       {"name": "efficientnet-lite2 ImageNet, off the shelf (288x216)", "recipe": None, "command": "x",
                        "results": _results(0.81), "machine": machine()}]
    table = [line for line in pretrained.markdown(report, str(results_dir)).splitlines() if line.startswith("| ")][1:]
    assert "| EfficientNet-Lite2, ImageNet, 288x216 |" in table[1] and "| 0.810 |" in table[1]
    assert "| EfficientNet-Lite2, ImageNet, fine-tuned (photo augmentation, trained at 288x216) | all base" in table[-1]
    assert sum("EfficientNet-Lite0" in line for line in table) == 4
    assert pretrained.markdown(report, str(results_dir)).startswith(
        "### ImageNet-pretrained trunks: EfficientNet-Lite0 and EfficientNet-Lite2, off the shelf and fine-tuned")


def test_only_rows_whose_all_phase_followed_top_blocks_before_the_fix_are_marked_top_blocks_only():
    from benchmarks import pretrained

    opens = pretrained.opens_top_blocks_then_all
    assert opens(["none:1:1e-3", "3:2:3e-4", "all:7:1e-4"]) and opens(["all:1", "2:1", "all:1"])
    assert not opens(["none:1:1e-3", "3:2:3e-4"])
    assert not opens(["none:1", "all:2"])  # a frozen trunk's flag was False: `all` reopened every block
    assert not opens(["3:1", "none:1", "all:1"]) and not opens(["0:1", "all:1"]) and not opens(None)
    affected = {name for name, recipe in pretrained.RECIPES.items()
                if opens({**pretrained.COMMON, **recipe}["phases"])}
    assert {"effnet-siamese", "effnet-closed-224-10ep-512", "lite2-closed-224-10ep-512"} <= affected
    assert "effnet-photo-288" not in affected
    recipe = {**pretrained.COMMON, **pretrained.RECIPES["effnet-closed-224-10ep-512"]}
    assert pretrained.top_blocks_only({"recipe": recipe})  # measured before the fix
    assert not pretrained.top_blocks_only({"recipe": recipe, "whole_trunk_fix": True})
    assert not pretrained.top_blocks_only({"recipe": None})  # off the shelf


@pytest.mark.parametrize("argv, message", [
    (["--off-the-shelf-backbone", "resnet18"], "--off-the-shelf-backbone must be a trunk whose ImageNet weights load"),
    (["--off-the-shelf-sizes", "288by216"], "--off-the-shelf-sizes: "),
    (["--eval-sizes", "352x264,12"], "--eval-sizes: "),
])
def test_pretrained_refuses_bad_off_the_shelf_flags(tmp_path, capsys, argv, message):
    from benchmarks import pretrained

    with pytest.raises(SystemExit):
        pretrained.main(["--data", str(tmp_path), "--recipes", "effnet-siamese", *argv])
    assert message in capsys.readouterr().err


def test_photo_queries_are_deterministic_customer_photos():
    import numpy as np

    from benchmarks.photo_queries import photo_queries

    studio = np.full((3, 32, 24, 3), 255, np.uint8)
    studio[:, 10:22, 8:16] = 30
    a, b = photo_queries(studio, seed=0), photo_queries(studio, seed=0)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == studio.shape
    assert np.abs(a.astype(int) - studio).mean() > 5  # not studio shots any more
    assert not np.array_equal(a, photo_queries(studio, seed=1))


def test_host_settings_table_compares_each_setting_with_the_default():
    from benchmarks import host_settings
    from benchmarks.common import machine

    def passes(speed):
        return {"images_per_second": speed, "user_seconds": 10.0, "system_seconds": 1.0, "minor_faults_per_step": 1000}

    report = {"command": "python benchmarks/host_settings.py", "machine": machine(), "steps": 6, "batch": 128,
              "rows": [{"setting": "default", "images_per_second": [20.0], "best": passes(20.0)},
                       {"setting": "jemalloc", "images_per_second": [25.0], "best": passes(25.0)}],
              "skipped": {"tcmalloc": "not installed"}}
    text = host_settings.markdown(report)
    assert "| `jemalloc` | 25.0 (25.0) | 1.25 |" in text and "`tcmalloc` not measured: not installed" in text


@pytest.mark.slow
def test_index_benchmark_measures_milvus_beside_the_others_on_real_embeddings(tmp_path, monkeypatch):
    """index_search on a tiny mixture and a tiny `--real` file: every backend, both data sets, one table."""
    import numpy as np

    from benchmarks import index_search

    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(300, 8)).astype(np.float32)
    queries = gallery[:20] + 0.01 * rng.normal(size=(20, 8)).astype(np.float32)
    real = tmp_path / "products.npz"
    np.savez(real, gallery=gallery / np.linalg.norm(gallery, axis=1, keepdims=True), queries=queries,
             model="m v1", data="toy", copies=1)
    out = str(tmp_path / "index_search")
    assert index_search.main(["--sizes", "200", "--dim", "8", "--queries", "20", "--centres", "10", "--backends",
                              "brute,milvus", "--option", "milvus:index_type=FLAT", "--real", str(real),
                              "--out", out]) == 0
    report = json.load(open(out + ".json"))
    rows = {(row["data"], row["backend"]): row for row in report["rows"]}
    assert set(rows) == {("mixture", "brute"), ("mixture", "milvus"), ("products", "brute"), ("products", "milvus")}
    assert all(row["recall_at_10"] == 1.0 for row in rows.values())  # FLAT is exact
    assert rows[("products", "milvus")]["size"] == 300 and rows[("mixture", "milvus")]["inserts_per_second"] > 0
    text = open(out + ".md").read()
    assert "| products | 300 | `milvus` | index_type=FLAT" in text and "held-out" in text


@pytest.mark.slow
def test_product_embeddings_hold_out_queries_and_add_augmented_copies(siamese_run, catalogue, tmp_path):
    import numpy as np

    from benchmarks import product_embeddings
    from visnet.exporting import export_run

    model = str(tmp_path / "models" / "shop")
    export_run(siamese_run, model)
    out = str(tmp_path / "products.npz")
    assert product_embeddings.main(["--model", model, "--data", catalogue, "--copies", "1", "--queries", "5",
                                    "--out", out]) == 0
    stored = np.load(out)
    photos = len(__import__("visnet.data.readers", fromlist=["load_dataset"]).load_dataset(catalogue, progress=False))
    assert stored["queries"].shape[0] == 5 and stored["gallery"].shape[0] == 2 * photos - 5
    assert np.allclose(np.linalg.norm(stored["gallery"], axis=1), 1, atol=1e-4)
    # A held-out photo's nearest gallery vector is usually its own augmented copy.
    assert (stored["queries"] @ stored["gallery"].T).max(axis=1).min() > 0.5


@pytest.mark.slow
def test_api_load_benchmark_runs_its_scenarios_and_profiles_a_search(gallery_files, tmp_path):
    from benchmarks import api_load

    model_path, index, _, _ = gallery_files
    out = str(tmp_path / "api_load")
    code = api_load.main(["--model", model_path, "--index", index, "--seconds", "1", "--scenarios", "clean,bad",
                          "--clients", "3", "--out", out])
    report = json.load(open(out + ".json"))
    assert code == 0, report["rows"]
    assert [row["scenario"] for row in report["rows"]] == ["single", "clean", "bad"]
    bad = report["rows"][2]
    assert bad["server_errors"] == 0 and bad["bad_otherwise"] == 0 and bad["bad_as_documented"] > 0
    assert report["stages"]["model (1 image)"] > 0
    assert "Where one search's time goes" in open(out + ".md").read()


def _without_validation(run_path: str, folder) -> str:
    """A copy of a run whose config says it held no validation classes out (val none), as a run
    trained on every base class does; same weights, so the same figures."""
    import shutil

    copy = str(folder / "no-validation")
    shutil.copytree(run_path, copy)
    with open(os.path.join(copy, "config.json")) as handle:
        config = json.load(handle)
    with open(os.path.join(copy, "config.json"), "w") as handle:
        json.dump({**config, "val": "none"}, handle)
    return copy


def test_reranking_chooses_on_validation_and_measures_the_novel_classes_as_evaluate_does(
        catalogue, siamese_run, tmp_path, capsys):
    from benchmarks import reranking
    from visnet import evaluate

    out = str(tmp_path / "reranking")
    assert reranking.main(["--data", catalogue, "--run", f"tiny={siamese_run.path}", "--out", out]) == 0
    row = json.load(open(out + ".json"))["rows"][0]
    assert len(row["validation"]) == len(reranking.grid()) == len(row["novel"])
    best = max(row["validation"].values(), key=lambda v: v["mAP"])["mAP"]
    assert row["validation"][row["chosen"]]["mAP"] == best
    assert row["chosen"] != "none" or best == row["validation"]["none"]["mAP"]
    assert row["qe_only"].startswith("qe=") and ",dba=0," in row["qe_only"] or row["qe_only"] == "none"
    assert row["novel"][row["oracle"]]["mAP"] == max(v["mAP"] for v in row["novel"].values())
    # The novel-class figures are visnet.evaluate's, with and without the chosen re-ranking.
    for setting in ("none", row["chosen"]):
        results = tmp_path / "evaluate.json"
        assert evaluate.main(["--data", catalogue, "--run", siamese_run.path, "--episodes", "2", "--no-progress",
                              "--expansion", setting, "--out", str(results)]) == 0
        assert json.load(open(results))["open_set"]["mAP"] == pytest.approx(row["novel"][setting]["mAP"], abs=1e-6)
    assert "QE + DBA" in open(out + ".md").read()
    with pytest.raises(SystemExit):
        reranking.main(["--data", catalogue, "--run", "nothing-here"])
    assert "--run takes NAME=PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        reranking.main(["--data", catalogue, "--run", f"tiny={siamese_run.path}@big"])
    assert "'big'" in capsys.readouterr().err
    # A run without validation classes takes another run's choice, or is refused with a hint.
    no_val = _without_validation(siamese_run.path, tmp_path)
    with pytest.raises(SystemExit):
        reranking.main(["--data", catalogue, "--run", f"all={no_val}"])
    assert "no validation classes (val=none)" in capsys.readouterr().err
    both = ["--data", catalogue, "--run", f"tiny={siamese_run.path}", "--run", f"all={no_val}"]
    assert reranking.main([*both, "--chosen-by", "all=tiny", "--out", out]) == 0
    tiny, taken = json.load(open(out + ".json"))["rows"]
    assert taken["chosen_by"] == "tiny" and tiny["chosen_by"] is None
    assert (taken["chosen"], taken["qe_only"], taken["validation"]) == (tiny["chosen"], tiny["qe_only"], tiny["validation"])
    assert taken["novel"] == tiny["novel"]  # the same weights, measured the same way
    assert "| validation of tiny |" in open(out + ".md").read()
    for bad, message in (("tiny=all", "must come before"), ("x=tiny", "two different --run names")):
        with pytest.raises(SystemExit):
            reranking.main([*both, "--chosen-by", bad])
        assert message in capsys.readouterr().err
    # Several runs as one model (PATH+PATH) take another run's setting, here a row of the report merged
    # into (--merge), which keeps the earlier rows and lists both commands. A run and its copy rank
    # exactly as the run does.
    pair = ["--run", f"pair={siamese_run.path}+{no_val}"]
    with pytest.raises(SystemExit):
        reranking.main(["--data", catalogue, *pair, "--out", out])
    assert "as one model have no validation classes" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # without --merge there is no row named tiny to take it from
        reranking.main(["--data", catalogue, *pair, "--chosen-by", "pair=tiny", "--out", out])
    assert "two different --run names (runs: pair)" in capsys.readouterr().err
    assert reranking.main(["--data", catalogue, *pair, "--chosen-by", "pair=tiny", "--merge", "--out", out]) == 0
    report = json.load(open(out + ".json"))
    assert [row["name"] for row in report["rows"]] == ["tiny", "all", "pair"] and len(report["calls"]) == 2
    assert report["rows"][2]["novel"]["none"] == pytest.approx(tiny["novel"]["none"], abs=1e-6)
    assert report["rows"][2]["chosen"] == tiny["chosen"]
    assert open(out + ".md").read().count("--merge") == 1 and "), then `python" in open(out + ".md").read()


def test_transductive_chooses_on_validation_and_measures_the_pool_as_evaluate_does(
        catalogue, siamese_run, tmp_path, capsys):
    from benchmarks import transductive
    from visnet import evaluate

    out = str(tmp_path / "transductive")
    args = ["--data", catalogue, "--run", f"tiny={siamese_run.path}", "--episodes", "4", "--queries", "2"]
    assert transductive.main([*args, "--out", out]) == 0
    row = json.load(open(out + ".json"))["rows"][0]
    settings = [transductive.setting(c) for c in transductive.grid()]
    assert settings[0] == "prototype" and list(row["validation"]) == settings == list(row["novel"])
    assert row["validation"]["prototype"]["5-way 5-shot"] is None  # 3 validation photos per class: not drawable
    best = max(transductive.score(v) for v in row["validation"].values())
    assert transductive.score(row["validation"][row["chosen"]]) == best
    assert transductive.score(row["novel"][row["oracle"]]) == max(transductive.score(v) for v in row["novel"].values())
    # The pool figures are visnet.evaluate's, for nearest prototype and for soft k-means at its defaults.
    results = tmp_path / "evaluate.json"
    assert evaluate.main(["--data", catalogue, "--run", siamese_run.path, "--episodes", "4", "--queries", "2",
                          "--classifiers", "prototype,soft-kmeans", "--no-progress", "--out", str(results)]) == 0
    for cell in json.load(open(results))["few_shot"]:
        key = "prototype" if cell["classifier"] == "prototype" else "iterations=10,temperature=5"
        assert cell["accuracy"] == pytest.approx(row["novel"][key][f"{cell['ways']}-way {cell['shots']}-shot"])
    assert "soft k-means (transductive)" in open(out + ".md").read()
    with pytest.raises(SystemExit):
        transductive.main([*args[:4], "--queries", "20"])
    assert "cannot fill a 5-way episode with 20 queries" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        transductive.main([*args[:4], "--episodes", "0"])
    assert "--episodes must be >= 1. Received: 0" in capsys.readouterr().err
    no_val = _without_validation(siamese_run.path, tmp_path)
    assert transductive.main([*args, "--run", f"all={no_val}", "--chosen-by", "all=tiny", "--out", out]) == 0
    tiny, taken = json.load(open(out + ".json"))["rows"]
    assert taken["chosen_by"] == "tiny" and (taken["chosen"], taken["validation"]) == (tiny["chosen"], tiny["validation"])
    assert taken["novel"] == tiny["novel"]
    assert "| validation of tiny |" in open(out + ".md").read()


def test_closed_set_labels_finds_names_that_contradict_labels():
    from benchmarks.closed_set_labels import named_class, names

    assert names("Nike Men Blue T-shirt", "Tshirts") and names("Kenneth Cole Women Flip-Flops", "Flip Flops")
    assert not names("Puma Laptop Bag", "Tops") and not names("Casual Shoe Laces", "Sports Shoes")
    classes = ["Casual Shoes", "Flats", "Heels", "Sandals", "Sports Sandals", "Sports Shoes"]
    assert named_class("Carlton London Women Black Flats", "Heels", classes) == "Flats"
    assert named_class("Catwalk Women Heels and Flats", "Heels", classes) is None  # it names its own label
    assert named_class("Lotto Men Sandals", "Sports Sandals", classes) is None  # less specific, not another class
    assert named_class("Puma Men Sports Sandals", "Flats", classes) == "Sports Sandals"  # the longest it names
    assert named_class("Puma Men Black Running", "Sports Shoes", classes) is None  # names no class


def test_closed_set_labels_splits_the_mistakes_by_what_the_names_say(catalogue, siamese_run, tmp_path):
    import csv
    import shutil

    from benchmarks import closed_set_labels
    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.benchmark import BenchmarkSettings, run_benchmark
    from visnet.evaluation.embedding import embed_dataset
    from visnet.training.runs import Run

    data = str(tmp_path / "catalogue")
    shutil.copytree(catalogue, data)
    protocol = Protocol.load(os.path.join(data, "protocol.json"))
    with open(os.path.join(data, "manifest.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    planted = [r["id"] for r in rows if r["id"] in set(protocol.test_ids) and r["type"] != "bag"][:3]
    for r in rows:  # three test photos whose names say "bag" though they are not labelled bag
        r["text"] = "red cotton bag" if r["id"] in planted else r["text"]
    with open(os.path.join(data, "manifest.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    out, sheet = str(tmp_path / "labels"), str(tmp_path / "sheet.png")
    assert closed_set_labels.main(["--data", data, "--run", f"tiny={siamese_run.path}", "--out", out,
                                   "--sheet", sheet, "--no-progress"]) == 0
    report = json.load(open(out + ".json"))
    test = report["splits"]["test"]
    assert test["names_another_class"] == 3 and {p["named"] for p in test["pairs"]} == {"bag"}
    assert test["names_own_label"] + test["names_another_class"] + test["names_no_class"] == len(protocol.test_ids)
    assert report["splits"]["train"]["names_another_class"] == 0 and os.path.getsize(sheet) > 0

    # The 1-NN figure is visnet.evaluate's; the mistakes on planted photos are counted by brute force.
    result = report["rows"][0]["results"]
    dataset = load_dataset(data)
    embedder = Run(siamese_run.path).embedder("best")
    reference = run_benchmark(embedder, dataset, protocol, BenchmarkSettings(), progress=False)["closed_set"]
    assert result["accuracy"] == pytest.approx(reference["knn_accuracy"]["1"]) and result["contradicted"] == 3
    train, train_x = embed_dataset(embedder, dataset.select(protocol.train_ids), progress=False)
    test_records, test_x = embed_dataset(embedder, dataset.select(protocol.test_ids), progress=False)
    nearest = ((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1).argmin(1)
    predicted = {r.id: train[j].label for r, j in zip(test_records, nearest)}
    labels = {r.id: r.label for r in test_records}
    assert result["errors_on_contradicted"] == sum(predicted[i] != labels[i] for i in planted)
    assert result["errors_as_named"] == sum(predicted[i] == "bag" for i in planted)
    assert "| tiny | its own |" in open(out + ".md").read()

    # --merge adds a row; a run and its copy as one model classify exactly as the run does.
    copy = str(tmp_path / "copy")
    shutil.copytree(siamese_run.path, copy)
    assert closed_set_labels.main(["--data", data, "--run", f"pair={siamese_run.path}+{copy}", "--out", out,
                                   "--merge", "--no-progress"]) == 0
    merged = json.load(open(out + ".json"))
    assert [row["name"] for row in merged["rows"]] == ["tiny", "pair"]
    assert merged["rows"][1]["results"]["accuracy"] == pytest.approx(result["accuracy"])
    assert merged["rows"][1]["results"]["errors_on_contradicted"] == result["errors_on_contradicted"]
    assert open(out + ".md").read().count("benchmarks/closed_set_labels.py --data") == 2  # both calls listed

    with pytest.raises(SystemExit):
        closed_set_labels.main(["--data", str(tmp_path), "--out", out])  # no protocol.json there
    with pytest.raises(SystemExit):
        closed_set_labels.main(["--data", data, "--run", "tiny=nowhere", "--out", out])


def test_word_probe_benchmark_measures_tags_and_text_search_on_the_novel_classes(catalogue, tmp_path, monkeypatch):
    from benchmarks import word_probe
    from visnet import backbones
    from visnet.data.protocol import Protocol

    # A fake ImageNet classifier on `tiny` (16 channels), so text search with ImageNet classes is measured too.
    kernel = np.random.default_rng(5).normal(0, 0.3, (16, 1000)).astype(np.float32)
    monkeypatch.setattr(backbones, "imagenet_classifier", lambda name, weights: (kernel, np.zeros(1000, np.float32)))
    results = str(tmp_path / "word_probe")
    options = ["--option", "backbone=tiny", "--option", "weights=none", "--option", "image_size=[32,24]",
               "--option", "folds=3", "--option", "epochs=2"]
    assert word_probe.main(["--data", catalogue, "--out", str(tmp_path / "probe"), "--results", results,
                            *options]) == 0
    report = json.load(open(results + ".json"))
    protocol = Protocol.load(os.path.join(catalogue, "protocol.json"))
    assert report["probe"]["classes"] == len(protocol.base_classes)  # fitted on the base classes only
    assert report["tags"]["images"] == sum(len(ids) for ids in protocol.novel_pool.values())
    for key in ("calibrated", "uncalibrated", "frequency"):
        assert 0 <= report["tags"][key]["1"] <= 1
    assert report["text_to_image"]["gallery"] == len(protocol.support_ids)
    table = open(results + ".md").read()
    assert "| **word probe, calibrated on held-out base classes** |" in table and "Recall@1" in table
    net = report["text_to_image"]["with_imagenet"]  # the weight chosen on held-out base classes (the default)
    assert report["probe"]["imagenet"]["chosen"] and set(net["by_weight"]) == {"0", "0.25", "0.5", "1", "2", "4"}
    assert net["by_weight"][f"{net['weight']:g}"] == net["recall"]["1"]
    assert net["by_weight"]["0"] == report["text_to_image"]["recall"]["1"]
    assert f"| **the same plus {net['weight']:g} × the log-probability of the ImageNet classes" in table
    assert "The weight was chosen on the base classes" in table
    with pytest.raises(SystemExit):
        word_probe.main(["--data", catalogue, "--option", "colour=red"])


def test_gallery_smoothing_chooses_k_on_validation_photos_and_measures_every_k(catalogue, siamese_run, tmp_path):
    from benchmarks import gallery_smoothing
    from visnet.training.config import TrainConfig
    from visnet.training.trainer import train

    config = TrainConfig(arch="siamese", data=catalogue, split="closed-set", out=str(tmp_path / "closed"),
                         image_size=(32, 24), backbone="tiny", embedding_dim=8, p=4, k=2, val="images:0.34",
                         epochs=1, steps_per_epoch=1, augment=False)
    train(config, progress=False)
    out = str(tmp_path / "smoothing")
    assert gallery_smoothing.main(["--data", catalogue, "--run", config.out, "--grid", "0,1,3", "--out", out]) == 0
    report = json.load(open(out + ".json"))
    assert [row["k"] for row in report["rows"]] == [0, 1, 3]
    best = max(row["validation_1nn"] for row in report["rows"])
    chosen = next(row for row in report["rows"] if row["k"] == report["chosen_k"])
    assert chosen["validation_1nn"] == best  # chosen on validation, never on the test split
    assert report["validation_photos"] > 0 and report["validation_photos"] < report["train_photos"]
    assert f"| {report['chosen_k'] or '0 (none)'} (chosen) |" in open(out + ".md").read()
    with pytest.raises(SystemExit):  # not a closed-set run
        gallery_smoothing.main(["--data", catalogue, "--run", siamese_run.path, "--out", out])


def test_gallery_smoothing_measures_runs_as_one_model_only_with_the_same_validation_photos(catalogue, tmp_path,
                                                                                          capsys):
    import dataclasses

    from benchmarks import gallery_smoothing
    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.classification import knn_accuracy
    from visnet.evaluation.embedding import embed_dataset
    from visnet.training.config import TrainConfig
    from visnet.training.runs import RunEnsemble
    from visnet.training.trainer import train

    config = TrainConfig(arch="siamese", data=catalogue, split="closed-set", out=str(tmp_path / "a"),
                         image_size=(32, 24), backbone="tiny", embedding_dim=8, p=4, k=2, val="images:0.34",
                         epochs=1, steps_per_epoch=1, augment=False)
    second = dataclasses.replace(config, out=str(tmp_path / "b"), embedding_dim=12)  # same seed: same photos held out
    other = dataclasses.replace(config, out=str(tmp_path / "c"), val="images:0.5")
    for each in (config, second, other):
        train(each, progress=False)
    out = str(tmp_path / "smoothing")
    both = f"{config.out}+{second.out}"
    assert gallery_smoothing.main(["--data", catalogue, "--run", both, "--grid", "0", "--out", out]) == 0
    report = json.load(open(out + ".json"))
    assert report["run"] == "a+b"
    # K=0 is plain 1-NN of the two runs as one model, as RunEnsemble embeds them.
    train_records, test_records = Protocol.load(os.path.join(catalogue, "protocol.json")).closed_set(
        load_dataset(catalogue, check="none"), missing="skip")
    embedder = RunEnsemble([config.out, second.out]).embedder("best")
    kept_train, train_x = embed_dataset(embedder, train_records, progress=False)
    kept_test, test_x = embed_dataset(embedder, test_records, progress=False)
    expected = knn_accuracy(train_x, np.array([r.label for r in kept_train]), test_x,
                            np.array([r.label for r in kept_test]), ks=(1,))[1]
    assert report["rows"][0]["test_1nn"] == pytest.approx(expected)
    with pytest.raises(SystemExit):  # other validation photos: K would be chosen on photos a member trained on
        gallery_smoothing.main(["--data", catalogue, "--run", f"{config.out}+{other.out}", "--out", out])
    assert f"{other.out} held out other photos than {config.out}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gallery_smoothing.main(["--data", catalogue, "--run", f"{config.out}+", "--out", out])
    assert "no empty part" in capsys.readouterr().err
