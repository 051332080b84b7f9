"""The benchmark scripts that gather tables: quality (one `visnet.evaluate` per entry), speed
(gathered from the other reports) and the README's generated results section."""

import json
import os
import re
import sys

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
