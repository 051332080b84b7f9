"""The README stays true: its Python runs, and its commands parse with the real CLIs."""

import os
import re
import shlex

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
TEXT = open(README, encoding="utf-8").read()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
COMMANDS = [command.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S)
            for command in block.replace("\\\n", " ").splitlines() if command.startswith("python -m visnet.")]


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
    from visnet import embed, evaluate, tag, train
    from visnet.data import catalogue

    parsers = {"visnet.evaluate": evaluate.build_parser, "visnet.data.catalogue": catalogue.build_parser,
               "visnet.train": train.build_parser, "visnet.embed": embed.build_parser, "visnet.tag": tag.build_parser}
    words = shlex.split(command)
    assert words[2] in parsers, f"README shows {words[2]}, which no test covers"
    parsers[words[2]]().parse_args(words[3:])


def test_there_is_something_to_check():
    assert PYTHON_BLOCKS and len(COMMANDS) >= 5
