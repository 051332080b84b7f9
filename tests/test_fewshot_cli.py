"""`python -m visnet.fewshot`: the N x K grid as CSV, heatmap PNG and JSON; voting over runs."""

import csv
import json
import os

import pytest


def _rows(prefix):
    with open(prefix + ".csv") as handle:
        return list(csv.DictReader(handle))


def test_the_grid_is_written_as_csv_heatmap_and_json(catalogue, tmp_path, capsys):
    from visnet import fewshot

    out = str(tmp_path / "grid" / "hog")
    code = fewshot.main(["--data", catalogue, "--ways", "2,3,20", "--shots", "1,2", "--episodes", "12",
                         "--queries", "2", "--out", out, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    rows = _rows(out)
    assert [(r["ways"], r["shots"]) for r in rows] == [("2", "1"), ("2", "2"), ("3", "1"), ("3", "2"),
                                                       ("20", "1"), ("20", "2")]
    for r in rows[:4]:
        assert 0 <= float(r["accuracy"]) <= 1 and float(r["ci95"]) >= 0 and r["episodes"] == "12"
    assert rows[4]["accuracy"] == "" and "20" in rows[4]["error"]  # more ways than novel classes: n/a
    assert os.path.getsize(out + ".png") > 2000
    report = json.load(open(out + ".json"))
    assert report["embedders"] == ["hog"] and len(report["rows"]) == 6
    assert "2-way  1-shot" in capsys.readouterr().out


def test_the_transductive_classifier_runs_from_the_command_line(catalogue, tmp_path, capsys):
    from visnet import fewshot

    out = str(tmp_path / "soft")
    code = fewshot.main(["--data", catalogue, "--ways", "3", "--shots", "1", "--episodes", "6", "--queries", "2",
                         "--classifier", "soft-kmeans", "--out", out, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.load(open(out + ".json"))
    assert report["classifier"] == "soft-kmeans" and report["rows"][0]["classifier"] == "soft-kmeans"
    assert 0 <= report["rows"][0]["accuracy"] <= 1 and report["rows"][0]["episodes"] == 6


@pytest.mark.slow
def test_an_ensemble_votes_over_two_runs(catalogue, siamese_run, weak_run, tmp_path, capsys):
    from visnet import fewshot

    out = str(tmp_path / "vote")
    code = fewshot.main(["--data", catalogue, "--run", siamese_run.path, "--run", weak_run.path, "--classifier",
                         "ensemble", "--members", "prototype,1nn", "--voting", "hard", "--ways", "2",
                         "--shots", "1", "--episodes", "8", "--queries", "2", "--out", out, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.load(open(out + ".json"))
    members = report["classifier"]["members"]
    assert len(members) == 4 and members[0]["columns"] == [0, 16] and members[2]["columns"] == [16, 32]
    assert report["classifier"]["voting"] == "hard" and len(report["embedders"]) == 2


def test_errors_name_the_bad_value(catalogue, siamese_run, tmp_path, capsys):
    from visnet import fewshot

    base = ["--data", catalogue, "--out", str(tmp_path / "x"), "--no-progress"]
    assert fewshot.main([*base, "--classifier", "svm"]) == 2
    assert "Unknown few-shot classifier: 'svm'" in capsys.readouterr().err
    assert fewshot.main([*base, "--ways", "1"]) == 2
    assert "--ways must be >= 2" in capsys.readouterr().err
    assert fewshot.main([*base, "--run", siamese_run.path, "--run", siamese_run.path]) == 2
    assert "needs --classifier ensemble" in capsys.readouterr().err
    assert fewshot.main([*base, "--episodes", "0"]) == 2
