"""Per-checkpoint result cache (grokinterp.cache): hits are identical, changes invalidate, junk is rebuilt."""

import json
import shutil

import pytest

import grokinterp as gi
from grokinterp import cache
from grokinterp.analysis import progress as progress_analysis
from grokinterp.store import REPO_CHECKPOINTS, atomic_write_tensors, checkpoint_path, read_tensors

KEYS = [3, 7]


@pytest.fixture
def run(tiny_run, tmp_path, monkeypatch):
    """A copy of the tiny run that the test may change; no GROKINTERP_CACHE, so <run>/.cache is used."""
    monkeypatch.delenv("GROKINTERP_CACHE", raising=False)
    shutil.copytree(tiny_run.path, tmp_path / "tiny23", ignore=shutil.ignore_patterns(".cache"))  # what other tests cached stays behind
    return gi.load_run(tmp_path / "tiny23")


@pytest.fixture
def computed(monkeypatch):
    """Steps the uncached analysis is run on, call by call."""
    calls = []
    real = progress_analysis.progress_measures

    def spy(weights, steps, *args, **kw):
        calls.append(list(steps))
        return real(weights, steps, *args, **kw)

    monkeypatch.setattr(progress_analysis, "progress_measures", spy)
    return calls


def direct(run, steps=None):
    steps = run.steps if steps is None else steps
    return progress_analysis.progress_measures(run.stacked_weights(steps), steps, run.task, gi.models.model_spec(run.config.model),
                                               run.train_mask, KEYS)


def assert_same(a, b):
    for k, v in a.as_dict().items():
        assert v == b.as_dict()[k], k


def test_hit_is_identical_and_computes_nothing(run, computed):
    first = cache.progress_measures(run, KEYS)
    assert computed == [run.steps] and (run.path / ".cache").is_dir()
    second = cache.progress_measures(run, KEYS)
    assert computed == [run.steps]  # nothing recomputed
    assert_same(second, first)
    assert_same(second, direct(run))
    cache.progress_measures(run, [5])  # other key frequencies: another cache file, all computed
    assert computed[-1] == run.steps and len(list((run.path / ".cache").iterdir())) == 2


def test_changed_checkpoint_is_recomputed(run, computed):
    before = cache.progress_measures(run, KEYS)
    step = run.steps[len(run.steps) // 2]
    tensors, meta = read_tensors(checkpoint_path(run.path, step))
    atomic_write_tensors(checkpoint_path(run.path, step), {k: v * 0.5 for k, v in tensors.items()}, meta)
    after = cache.progress_measures(run, KEYS)
    assert computed[-1] == [step]
    i = run.steps.index(step)
    assert after.sum_squared_weights[i] == pytest.approx(before.sum_squared_weights[i] / 4)
    assert_same(after, direct(run))


def test_changed_split_invalidates(run, computed):
    cache.progress_measures(run, KEYS)
    split = json.loads((run.path / "split.json").read_text())
    split["train"] = split["train"][1:]
    (run.path / "split.json").write_text(json.dumps(split))
    run = gi.load_run(run.path)
    assert_same(cache.progress_measures(run, KEYS), direct(run))
    assert computed[-1] == run.steps


@pytest.mark.parametrize("junk", [b"", b"{not json", b'{"rows": [1, 2]}', b'{"rows": {"abc": {"train_loss": "x"}}}'])
def test_corrupt_cache_file_is_ignored_and_rebuilt(run, computed, junk):
    first = cache.progress_measures(run, KEYS)
    (file,) = (run.path / ".cache").iterdir()
    file.write_bytes(junk)
    assert_same(cache.progress_measures(run, KEYS), first)
    assert len(computed) == 2 and len(json.loads(file.read_text())["rows"]) == len(run.steps)


def test_shipped_run_is_not_written_to(tmp_path, monkeypatch):
    monkeypatch.delenv("GROKINTERP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    run = gi.load_run("modadd113")
    assert run.path.resolve().parent == REPO_CHECKPOINTS.resolve()
    files = lambda: sorted(p for p in run.path.rglob("*") if "figures" not in p.parts)  # noqa: E731
    before = files()
    m = cache.progress_measures(run, [14, 35], steps=[0])
    assert files() == before
    (written,) = (tmp_path / "grokinterp").glob("*/progress-*.json")
    assert cache.progress_measures(run, [14, 35], steps=[0]).as_dict() == m.as_dict()
    assert written.stat().st_size > 0


def test_grokinterp_cache_variable_moves_the_cache(run, tmp_path, monkeypatch):
    monkeypatch.setenv("GROKINTERP_CACHE", str(tmp_path / "elsewhere"))
    cache.progress_measures(run, KEYS)
    assert not (run.path / ".cache").exists() and list((tmp_path / "elsewhere").glob("*/progress-*.json"))


def test_neuron_null_is_kept_per_checkpoint(run, monkeypatch):
    """The relabelling null of the key frequencies is computed once per checkpoint file, shared by the
    reports, and recomputed when the file changes."""
    from grokinterp.analysis import fourier as fa
    from grokinterp.report import fourier_report, progress_report

    calls = []
    real = fa.relabelled_top_share
    monkeypatch.setattr(fa, "relabelled_top_share", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    first = fourier_report(run).payload
    assert len(calls) == 1
    again = fourier_report(run).payload
    assert len(calls) == 1 and again["relabelled_largest_share_99th"] == first["relabelled_largest_share_99th"]
    assert again["key_frequencies"] == first["key_frequencies"] == progress_report(run).payload["key_frequencies"]
    assert len(calls) == 1  # progress reads the last checkpoint's null from the cache
    step = run.steps[-1]
    tensors, meta = read_tensors(checkpoint_path(run.path, step))
    atomic_write_tensors(checkpoint_path(run.path, step), {k: v * 0.5 for k, v in tensors.items()}, meta)
    fourier_report(gi.load_run(run.path))
    assert len(calls) == 2
