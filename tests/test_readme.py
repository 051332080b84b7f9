"""The README stays true: its Python runs, and its commands parse with the real CLIs."""

import os
import re
import shlex

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
TEXT = open(README, encoding="utf-8").read()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
CLIENT_BLOCKS = [code for code in BLOCKS if "GrpcClient(" in code]  # need a model server: run against ours
PYTHON_BLOCKS = [code for code in BLOCKS if code not in CLIENT_BLOCKS]
COMMANDS = [command.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S)
            for command in block.replace("\\\n", " ").splitlines()
            if command.startswith(("python -m visnet.", "python -m serving.", "python -m tuning."))]


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", TEXT, re.S).group(1)
    assert TEXT.index("```bash") < TEXT.index("\n## ")  # before any section
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.startswith("make")]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize("code", PYTHON_BLOCKS)
def test_python_blocks_run(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert "Open-set retrieval" in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_parse(command):
    from serving import api, grpc_server
    from tuning import search
    from visnet import (
        embed,
        evaluate,
        export,
        fewshot,
        layer_removal,
        recognise,
        report,
        tag,
        train,
        word_probe,
    )
    from visnet.data import catalogue
    from visnet.index import __main__ as index

    parsers = {"visnet.evaluate": evaluate.build_parser, "visnet.data.catalogue": catalogue.build_parser,
               "visnet.train": train.build_parser, "visnet.embed": embed.build_parser, "visnet.tag": tag.build_parser,
               "visnet.recognise": recognise.build_parser,
               "visnet.export": export.build_parser, "visnet.index": index.build_parser,
               "serving.api": api.build_parser, "serving.grpc_server": grpc_server.build_parser,
               "tuning.search": search.build_parser, "visnet.fewshot": fewshot.build_parser,
               "visnet.report": report.build_parser, "visnet.layer_removal": layer_removal.build_parser,
               "visnet.word_probe": word_probe.build_parser}
    words = shlex.split(command)
    assert words[2] in parsers, f"README shows {words[2]}, which no test covers"
    parsers[words[2]]().parse_args(words[3:])


@pytest.mark.parametrize("code", CLIENT_BLOCKS)
def test_client_blocks_run_against_our_model_server(code, siamese_run, tmp_path, monkeypatch):
    """The README's client example, with localhost:8500 pointed at serving.grpc_server on a free port."""
    from helpers import write_image

    from serving.grpc_server import grpc_server
    from visnet.exported import ExportedModel
    from visnet.exporting import export_run

    export_run(siamese_run, str(tmp_path / "models" / "shop"))
    server = grpc_server(ExportedModel(str(tmp_path / "models" / "shop")), 0)
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "photo.jpg", size=(50, 40), seed=0, fmt="JPEG")
    scope = {}
    try:
        exec(compile(code.replace("localhost:8500", f"127.0.0.1:{server.port}"), "README.md", "exec"), scope)
    finally:
        server.stop(None)
    assert scope["embeddings"].shape == (1, 16) and scope["valid"].tolist() == [True]


def test_there_is_something_to_check():
    assert PYTHON_BLOCKS and CLIENT_BLOCKS and len(COMMANDS) >= 10
