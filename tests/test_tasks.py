import itertools

import numpy as np
import pytest

from grokinterp.tasks import TASKS, Task, TaskError, format_table, s5, symbol_names


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


@pytest.mark.parametrize("name", [n for n in TASKS if not n.startswith("s5")])
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
