"""Shared fixtures: one small trained run (a+b mod 23 on tiny-1l) reused by many tests."""

import shutil

import pytest

import grokinterp as gi
from grokinterp.cli import main


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def tiny_run(runs_dir):
    """The tiny23 preset trained to its end (memorises, then generalises)."""
    gi.train(gi.preset("tiny23"), runs_dir=runs_dir, progress=False)
    return gi.load_run("tiny23", runs_dir)


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A throw-away copy of the tiny run, in its own runs folder, to damage."""
    dst = tmp_path / "runs" / "copy"
    shutil.copytree(tiny_run.path, dst)
    return dst


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of ``grokinterp *argv`` run in this process."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err
