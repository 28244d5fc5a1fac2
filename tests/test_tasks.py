import itertools

import numpy as np
import pytest

from grokinterp.config import ConfigError, RunConfig
from grokinterp.groups import group_from_spec
from grokinterp.tasks import MODULAR_OPS, Task, TaskError, format_table, s5, symbol_names


def direct(name, x, y, p):
    inv = lambda a: pow(a, p - 2, p)  # noqa: E731
    return {
        "add": lambda: (x + y) % p,
        "sub": lambda: (x - y) % p,
        "div": lambda: None if y == 0 else x * inv(y) % p,
        "div_odd_sub": lambda: x * inv(y) % p if y % 2 else (x - y) % p,
        "sq_sum": lambda: (x * x + y * y) % p,
        "quad": lambda: (x * x + x * y + y * y) % p,
        "quad_x": lambda: (x * x + x * y + y * y + x) % p,
        "cube_xy": lambda: (x**3 + x * y) % p,
        "cube_xy2_y": lambda: (x**3 + x * y * y + y) % p,
    }[name]()


@pytest.mark.parametrize("name", list(MODULAR_OPS))
@pytest.mark.parametrize("p", [97, 13])
def test_modular_tables_match_direct_computation(name, p):
    task = Task(name, p)
    for x, y in itertools.product(range(p), range(p)):
        want = direct(name, x, y, p)
        assert task.table[x, y] == (-1 if want is None else want)
    assert len(task) == (p * (p - 1) if name == "div" else p * p)


def test_power_equation_counts():
    assert len(Task("div", 97)) == 9312 and len(Task("add", 97)) == 9409 and len(Task("s5_mul")) == 14400


def compose(a, b):
    return tuple(a[b[i]] for i in range(5))


def inverse(a):
    out = [0] * 5
    for i, ai in enumerate(a):
        out[ai] = i
    return tuple(out)


@pytest.mark.parametrize("name,fn", [
    ("s5_mul", lambda x, y: compose(x, y)),
    ("s5_conj", lambda x, y: compose(compose(x, y), inverse(x))),
    ("s5_xyx", lambda x, y: compose(compose(x, y), x)),
])
def test_s5_tables_match_permutation_composition(name, fn):
    task, el = Task(name), s5().elements
    for i in range(0, 120, 7):
        for j in range(120):
            assert el[task.table[i, j]] == fn(el[i], el[j])


def test_s5_group_axioms():
    g = s5()
    t = g.table
    e = g.identity
    assert g.elements[e] == (0, 1, 2, 3, 4)
    assert (t[e] == np.arange(120)).all() and (t[:, e] == np.arange(120)).all()
    assert (t[np.arange(120), g.inverse] == e).all()
    a, b, c = np.meshgrid(np.arange(0, 120, 3), np.arange(120), np.arange(0, 120, 5), indexing="ij")
    assert (t[t[a, b], c] == t[a, t[b, c]]).all()


def test_split_is_deterministic_disjoint_and_complete():
    task = Task("add", 113)
    tr1, te1 = task.split(0.3, 598)
    tr2, te2 = task.split(0.3, 598)
    assert (tr1 == tr2).all() and (te1 == te2).all()
    assert len(tr1) == 3830 and len(te1) == 8939  # Nanda et al.'s counts
    assert not set(tr1) & set(te1) and len(set(tr1) | set(te1)) == len(task)
    assert not (task.split(0.3, 1)[0] == tr1).all()


def test_inputs_and_vocabulary():
    t = Task("add", 7)
    assert t.input_array()[3].tolist() == [0, 3, 7] and t.d_vocab == 8
    t = Task("s5_mul", op_token=True)
    assert t.input_array()[1].tolist() == [0, 121, 1, 120] and t.d_vocab == 122 and t.n_ctx == 4


@pytest.mark.parametrize("kwargs", [dict(name="nope"), dict(name="div", p=12), dict(name="add", p=1)])
def test_bad_tasks(kwargs):
    with pytest.raises(TaskError):
        Task(**kwargs)


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5])
def test_bad_fraction(frac):
    with pytest.raises(TaskError):
        Task("add", 7).split(frac, 0)


def test_format_table_hides_test_cells():
    task = Task("add", 5)
    tr, _ = task.split(0.4, 0)
    text = format_table(task, tr, "numbers")
    assert text.count("?") == 25 - len(tr)
    assert symbol_names(28, "letters")[26:] == ["aa", "ab"]
    assert len(set(symbol_names(120, "emoji"))) == 120


# ---- group tasks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["S4", "D7", "C3xS3", "(0,1,2);(0,1)"])
def test_group_tasks_are_the_cayley_tables(spec):
    g = group_from_spec(spec)
    mul, conj = Task("group_mul", group_spec=spec), Task("group_conj", group_spec=spec)
    assert mul.n == g.n and len(mul) == g.n**2 and mul.d_vocab == g.n + 1 and mul.formula == f"x*y in {g.name}"
    assert (mul.table == g.table).all() and mul.element_names() == g.element_names()
    x, y = 3 % g.n, 5 % g.n
    assert conj.table[x, y] == g.table[g.table[x, y], g.inverse[x]]


def test_s5_tasks_are_group_tasks_in_s5():
    assert (Task("s5_mul").table == Task("group_mul", group_spec="S5").table).all()
    assert (Task("s5_xyx").table == Task("group_xyx", group_spec="s5").table).all()
    assert Task("s5_mul").formula == "x*y in S5" and Task("s5_mul", group_spec="s5").n == 120


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="group_mul"), "needs a group"),
    (dict(name="group_mul", group_spec="Q8"), "unknown group"),
    (dict(name="s5_mul", group_spec="S4"), "use group_mul"),
    (dict(name="add", group_spec="S4"), "modular arithmetic"),
])
def test_bad_group_tasks(kwargs, message):
    with pytest.raises(TaskError, match=message):
        Task(**kwargs)


def test_run_config_carries_the_group():
    cfg = RunConfig(name="d7", task="group_mul", group="D7", p=0)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg and cfg.make_task().n == 14
    old = {k: v for k, v in RunConfig(name="s5", task="s5_mul", p=0).to_dict().items() if k != "group"}
    assert RunConfig.from_dict(old).make_task().n == 120  # configs written before the field still load
    with pytest.raises(ConfigError, match="needs a group"):
        RunConfig(name="x", task="group_mul")


def test_table_and_train_flags(capsys, tmp_path):
    from grokinterp.cli import main

    assert main(["table", "--group", "D7", "--size", "3", "--symbols", "numbers"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("x*y in D7: 196 equations") and out.splitlines()[2].split()[:2] == ["0", "0"]
    assert main(["table", "--generators", "(0,1);(0,1,2)", "--task", "group_conj", "--size", "2"]) == 0
    assert "x*y*x^-1 in <(0,1);(0,1,2)>: 36 equations" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2"):  # one or the other
        main(["table", "--group", "S4", "--generators", "(0,1)"])
    assert main(["table", "--group", "S9"]) == 2 and "at most 1,000" in capsys.readouterr().err
    assert main(["train", "--run", "s5", "--group", "Z5", "--name", "z", "--runs-dir", str(tmp_path)]) == 2
    assert "unknown group" in capsys.readouterr().err and not (tmp_path / "z").exists()
