"""Algorithmic tasks of Power et al. 2022 (Appendix A.1.1): tables, vocabulary, inputs, splits.

A task is a binary operation ``x op y = z`` on n opaque symbols (the residues mod p, or the
elements of a finite group: S5 for the ``s5_*`` tasks, any group named by ``group`` for the
``group_*`` tasks). Every equation is one example; the model reads ``x y =`` (or ``x op y =``)
and predicts ``z``. Token ids: ``0..n-1`` are the elements, ``n`` is ``=``, ``n+1`` is ``op``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from .groups import FiniteGroup, GroupError, group_from_spec, letter_name


class TaskError(ValueError):
    """A task that cannot be built as asked (unknown name, p not prime, ...)."""


def is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))


def _mod(fn: Callable) -> Callable:
    return lambda x, y, p: fn(x, y, p) % p


# name -> (formula, function of numpy arrays (x, y, p), needs a field, valid(x, y) mask or None)
MODULAR_OPS: dict[str, tuple[str, Callable, bool, Callable | None]] = {
    "add": ("x+y", _mod(lambda x, y, p: x + y), False, None),
    "sub": ("x-y", _mod(lambda x, y, p: x - y), False, None),
    "div": ("x/y", _mod(lambda x, y, p: x * pow_mod(y, p - 2, p)), True, lambda x, y: y != 0),
    "div_odd_sub": (
        "x/y if y odd else x-y",
        _mod(lambda x, y, p: np.where(y % 2 == 1, x * pow_mod(y, p - 2, p), x - y)),
        True,
        None,
    ),
    "sq_sum": ("x^2+y^2", _mod(lambda x, y, p: x * x + y * y), False, None),
    "quad": ("x^2+xy+y^2", _mod(lambda x, y, p: x * x + x * y + y * y), False, None),
    "quad_x": ("x^2+xy+y^2+x", _mod(lambda x, y, p: x * x + x * y + y * y + x), False, None),
    "cube_xy": ("x^3+xy", _mod(lambda x, y, p: x**3 + x * y), False, None),
    "cube_xy2_y": ("x^3+xy^2+y", _mod(lambda x, y, p: x**3 + x * y * y + y), False, None),
}

# op -> (formula, function of element index arrays (x, y, group)); the tasks are s5_<op> (in S5)
# and group_<op> (in the group named by Task.group_spec)
GROUP_OPS: dict[str, tuple[str, Callable]] = {
    "mul": ("x*y", lambda x, y, g: g.table[x, y]),
    "conj": ("x*y*x^-1", lambda x, y, g: g.table[g.table[x, y], g.inverse[x]]),
    "xyx": ("x*y*x", lambda x, y, g: g.table[g.table[x, y], x]),
}
GROUP_TASKS = {f"{prefix}_{op}": (op, formula) for prefix in ("s5", "group") for op, (formula, _) in GROUP_OPS.items()}

TASKS = {**{k: v[0] for k, v in MODULAR_OPS.items()}, **{k: v[1] for k, v in GROUP_TASKS.items()}}
GROUP_HELP = "S<n>, A<n>, D<n> (order 2n), C<n>, products like C3xS3, or generators like '(0,1,2);(0,1)'"


def pow_mod(y: np.ndarray, e: int, p: int) -> np.ndarray:
    """Elementwise y**e mod p without overflow (square and multiply)."""
    y = np.asarray(y, dtype=np.int64) % p
    result = np.ones_like(y)
    while e:
        if e & 1:
            result = result * y % p
        y, e = y * y % p, e >> 1
    return result


def s5() -> FiniteGroup:
    """The symmetric group S5 (built once per process)."""
    return group_from_spec("S5")


@dataclass(frozen=True)
class Task:
    """One operation table. ``p`` is the modulus (ignored for group tasks); ``group_spec`` names the
    group of a ``group_*`` task (``groups.group_from_spec``: 'S4', 'D7', 'C3xS3', '(0,1,2);(0,1)')."""

    name: str
    p: int = 97
    op_token: bool = False  # inputs `x op y =` (4 tokens) instead of `x y =` (3 tokens)
    group_spec: str | None = None

    def __post_init__(self):
        if self.name not in TASKS:
            raise TaskError(f"unknown task {self.name!r}; choose one of: {', '.join(TASKS)}")
        if self.is_modular:
            if self.group_spec:
                raise TaskError(f"task {self.name!r} is modular arithmetic; a group goes with group_mul, group_conj or group_xyx")
            if self.p < 2:
                raise TaskError(f"p must be at least 2, got {self.p}")
            if MODULAR_OPS[self.name][2] and not is_prime(self.p):
                raise TaskError(f"task {self.name!r} divides, so p must be prime; {self.p} is not (try 97 or 113)")
        elif self.name.startswith("s5_"):
            if self.group_spec and self.group_spec.strip().upper() != "S5":
                raise TaskError(f"task {self.name!r} is in S5; for {self.group_spec} use group_{GROUP_TASKS[self.name][0]}")
        elif not self.group_spec:
            raise TaskError(f"task {self.name!r} needs a group: {GROUP_HELP}")
        else:
            try:
                g = group_from_spec(self.group_spec)
            except GroupError as e:
                raise TaskError(str(e)) from None
            if g.n < 2:
                raise TaskError(f"group {self.group_spec} has one element: nothing to learn")

    # ---- what it is -----------------------------------------------------------------------------
    @property
    def is_modular(self) -> bool:
        return self.name in MODULAR_OPS

    @property
    def formula(self) -> str:
        return TASKS[self.name] + (f" (mod {self.p})" if self.is_modular else f" in {self.group.name}")

    @property
    def group(self) -> FiniteGroup | None:
        if self.is_modular:
            return None
        return group_from_spec(self.group_spec or "S5")

    @property
    def n(self) -> int:
        """Number of elements (answer classes)."""
        return self.p if self.is_modular else self.group.n

    @property
    def equals_token(self) -> int:
        return self.n

    @property
    def d_vocab(self) -> int:
        return self.n + 1 + int(self.op_token)

    @property
    def n_ctx(self) -> int:
        return 3 + int(self.op_token)

    def element_names(self) -> list[str]:
        return [str(i) for i in range(self.n)] if self.is_modular else self.group.element_names()

    # ---- the table --------------------------------------------------------------------------------
    @cached_property
    def table(self) -> np.ndarray:
        """Shape (n, n): table[x, y] = x op y, or -1 where the operation is undefined (y = 0 for x/y)."""
        x, y = np.meshgrid(np.arange(self.n), np.arange(self.n), indexing="ij")
        if self.is_modular:
            _, fn, _, valid = MODULAR_OPS[self.name]
            z = fn(x.astype(np.int64), y.astype(np.int64), self.p)
            if valid is not None:
                z = np.where(valid(x, y), z, -1)
        else:
            z = GROUP_OPS[GROUP_TASKS[self.name][0]][1](x, y, self.group)
        return z.astype(np.int64)

    @cached_property
    def pairs(self) -> np.ndarray:
        """Shape (N, 2): every defined (x, y), row-major."""
        x, y = np.nonzero(self.table >= 0)
        return np.stack([x, y], axis=1)

    @cached_property
    def labels(self) -> np.ndarray:
        """Shape (N,): the answer z of each pair."""
        return self.table[self.pairs[:, 0], self.pairs[:, 1]]

    def __len__(self) -> int:
        return len(self.pairs)

    def all_inputs(self):
        """Token ids, shape (N, n_ctx): `x y =` or `x op y =` for every pair (a torch tensor)."""
        import torch

        return torch.from_numpy(self.input_array())

    def all_labels(self):
        import torch

        return torch.from_numpy(self.labels)

    def input_array(self) -> np.ndarray:
        x, y = self.pairs[:, 0:1], self.pairs[:, 1:2]
        eq = np.full_like(x, self.equals_token)
        cols = [x, np.full_like(x, self.n + 1), y, eq] if self.op_token else [x, y, eq]
        return np.concatenate(cols, axis=1)

    def split(self, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic train/test split of the pair indices: ``int(frac * N)`` train, sorted."""
        if not 0 < frac < 1:
            raise TaskError(f"training fraction must be in (0, 1), got {frac}")
        if seed < 0:
            raise TaskError(f"split seed must be 0 or more, got {seed}")
        perm = np.random.default_rng(seed).permutation(len(self))
        n_train = int(frac * len(self))
        if n_train == 0 or n_train == len(self):
            raise TaskError(f"fraction {frac} leaves an empty train or test set for {len(self)} equations")
        return np.sort(perm[:n_train]), np.sort(perm[n_train:])


# ---- printing tables (Power et al. Figure 1, right) -------------------------------------------


def symbol_names(n: int, kind: str) -> list[str]:
    """Opaque symbols for n elements: 'letters' (a..z, aa..), 'emoji', or 'numbers'."""
    if kind == "numbers":
        return [str(i) for i in range(n)]
    if kind == "letters":
        return [letter_name(i) for i in range(n)]
    if kind == "emoji":
        if n > 0x1F5FF - 0x1F330:
            raise TaskError(f"only {0x1F5FF - 0x1F330} emoji symbols available; use --symbols letters")
        return [chr(0x1F330 + i) for i in range(n)]
    raise TaskError(f"unknown symbols {kind!r}; choose letters, emoji or numbers")


def format_table(task: Task, train_idx: np.ndarray | None, symbols: str = "letters", size: int | None = None) -> str:
    """The operation table as text (the top-left ``size`` x ``size`` corner, size >= 1, when given);
    held-out cells (not in ``train_idx``) print as '?'."""
    if size is not None and size < 1:
        raise TaskError(f"table size (--size) must be at least 1, got {size}")
    names = symbol_names(task.n, symbols)
    m = task.n if size is None else min(size, task.n)
    known = np.zeros(len(task), bool)
    known[train_idx if train_idx is not None else slice(None)] = True
    cell = {}
    for i, (x, y) in enumerate(task.pairs):
        if x < m and y < m:
            cell[x, y] = names[task.labels[i]] if known[i] else "?"
    width = max(len(s) for s in names[: max(m, 1)] + ["?", "·"])
    if symbols == "emoji":
        width = 2
    pad = lambda s: s + " " * (width - (2 if symbols == "emoji" and s not in ("?", "·", "∘") else len(s)))
    op = "∘"
    lines = [" ".join([pad(op)] + [pad(names[y]) for y in range(m)])]
    for x in range(m):
        lines.append(" ".join([pad(names[x])] + [pad(cell.get((x, y), "·")) for y in range(m)]))
    if m < task.n:
        lines.append(f"(showing {m} of {task.n} rows and columns; --size to change)")
    return "\n".join(lines)
