"""`python -m visnet.report`: a run's figures on the novel classes and the page that shows them."""

import json
import os

import pytest


@pytest.mark.slow
def test_the_report_writes_every_figure_and_a_page(siamese_run, catalogue, tmp_path, capsys):
    from visnet import evaluate, report

    out = str(tmp_path / "report")
    assert report.main(["--run", siamese_run.path, "--data", catalogue, "--out", out, "--no-progress",
                        "--perplexity", "5"]) == 0, capsys.readouterr().err
    figures = ["precision_recall.png", "distances.png", "pca.png", "tsne.png", "training.png"]
    for name in figures:
        assert os.path.getsize(os.path.join(out, name)) > 5000, name
    page = open(os.path.join(out, "index.html")).read()
    assert all(f"src='{name}'" in page for name in figures)
    numbers = json.load(open(os.path.join(out, "report.json")))
    assert numbers["figures"] == figures and numbers["classes"] >= 2
    # The trained figures are the evaluation's own open-set figures.
    capsys.readouterr()
    results = evaluate.run(evaluate.build_parser().parse_args(
        ["--run", siamese_run.path, "--data", catalogue, "--no-progress", "--episodes", "2"]))
    assert numbers["trained mAP"] == pytest.approx(results["open_set"]["mAP"], abs=1e-4)
    assert 0 <= numbers["untrained pooled AP"] <= 1


def test_report_errors_name_the_value(catalogue, tmp_path, capsys):
    from visnet import report

    assert report.main(["--run", str(tmp_path / "none"), "--data", catalogue]) == 2
    assert "Run directory not found" in capsys.readouterr().err
    assert report.main(["--run", str(tmp_path), "--data", catalogue, "--perplexity", "0"]) == 2
    assert "--perplexity must be > 0" in capsys.readouterr().err
