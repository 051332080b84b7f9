import subprocess
import sys


def test_report_error_names_the_error_and_returns_2(capsys):
    from visnet.cli import report_error

    assert report_error(ValueError("bad --k: 0")) == 2
    assert capsys.readouterr().err == "error: bad --k: 0\n"
    assert report_error(KeyError("no item 'x'")) == 2
    assert capsys.readouterr().err == "error: no item 'x'\n"  # a KeyError's message without its quotes


def test_a_closed_output_pipe_ends_a_command_quietly():
    # `python -m visnet.tag ... | head`: head closes the pipe early; the command stops without an error message.
    script = ("import sys\nfrom visnet.cli import closed_output\n"
              "try:\n    [print(i) for i in range(200000)]\n    sys.stdout.flush()\n"
              "except BrokenPipeError:\n    sys.exit(closed_output())\n")
    python = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    python.stdout.readline()
    python.stdout.close()  # what head does after its lines
    python.wait(timeout=60)
    assert python.returncode == 1 and python.stderr.read() == b""
