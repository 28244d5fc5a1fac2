"""Shared fixtures: one small trained run (a+b mod 23 on tiny-1l) reused by many tests."""

import pytest

import grokinterp as gi


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def tiny_run(runs_dir):
    """The tiny23 preset trained to its end (memorises, then generalises)."""
    gi.train(gi.preset("tiny23"), runs_dir=runs_dir, progress=False)
    return gi.load_run("tiny23", runs_dir)
