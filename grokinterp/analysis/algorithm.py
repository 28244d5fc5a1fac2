"""Clock or pizza: which algorithm a model uses for a + b mod p (Zhong, Liu, Tegmark, Andreas 2023).

The Clock (Nanda et al.) multiplies the rotations of a and b: the correct logit does not depend
on a - b. The Pizza averages the embeddings first, E_a + E_b, then applies a nonlinearity: the
logit of c is ~ |cos(w(a-b)/2)| cos(w(a+b-c)), so the correct logit depends on the distance a - b.
The paper tells them apart with two measures, both computed here from a *logit function*
``f(e_a, e_b) -> logits`` (e_a, e_b: (N, d) input embedding vectors of the two operands; logits
(N, n)) and the operand embedding ``E`` (p, d), so that models and hand-built algorithms share one
interface:

- gradient symmetricity: over triples (a, b, c), the cosine similarity of dQ_abc/dE_a and
  dQ_abc/dE_b (Q_abc: the logit of c on input (a, b)). The paper averages it (their code: 100
  random triples); we give the mean and the share of triples above 0.99. Pizza ~1, Clock lower.
- distance irrelevance: with q the correct logit arranged as q[(a+b) mod p, (a-b) mod p],
  mean over d of std over s of q[s, d], divided by the std of all of q (their ``eval-main``
  notebook). Clock ~1 (the correct logit does not follow a - b), Pizza low.

Per key frequency k the measures are taken on the model with its operand embedding restricted
to the constant and frequency-k Fourier components (the paper's "circle isolation"). A circle's
weight in the model is its share of the whole model's logit variance along cos/sin(w_k (a + b)) (Nanda
et al.'s logit directions), over all key frequencies; a minor circle (below ``MIN_CIRCLE_SHARE``, or below
what the logits shuffled over the pairs put in a circle where that is larger: ``shuffled_circle_share``) hardly
moves the logits, so its measures say little about what the model computes, and the verdict leaves it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..engine import forward
from ..models import ModelSpec
from ..tasks import Task
from .fourier import answer_directions, fourier_basis, logit_variance_explained
from .shuffles import seeded_permutations

LogitFn = Callable[[Tensor, Tensor], Tensor]  # (e_a (N, d), e_b (N, d)) -> logits (N, n)

SYMMETRIC_COSINE = 0.99  # the paper's threshold on one triple's gradient cosine
PIZZA_SYMMETRICITY = 0.95  # mean cosine at or above: pizza-like gradients (paper: pizzas ~0.99, clocks 0.3-0.8)
PIZZA_DISTANCE_IRRELEVANCE = 0.5  # at or below: the correct logit follows a - b (paper: pizzas ~0.2, clocks 0.6-1)
MIN_CIRCLE_SHARE = 0.005  # below: a minor circle, left out of the verdict (ours: 0.0-0.4% read as neither; next 0.9%, 1.7%)
CIRCLE_SHUFFLES = 200  # shuffles of the logits over the pairs for the circle shares' null


def model_logit_fn(weights: dict[str, Tensor], task: Task, spec: ModelSpec) -> LogitFn:
    """The logit function of ONE checkpoint (weights {name: (1, ...)}) with free operand embeddings
    (``spec``: the run's, ``RunConfig.spec``, with its attention rate).

    Each example gets its own two vocabulary rows holding e_a and e_b (the other tokens, ``=`` and
    the operator, keep theirs), so one engine forward and one backward give every example's
    gradients with respect to its own operand embeddings.
    """
    n, pos_a, pos_b = task.n, 0, 2 if task.op_token else 1
    tokens_template = task.all_inputs()[0]
    extra = weights["embed.W_E"][0, n:]  # the non-operand tokens

    def f(e_a: Tensor, e_b: Tensor) -> Tensor:
        N = e_a.shape[0]
        params = dict(weights)
        params["embed.W_E"] = torch.cat([e_a.float(), e_b.float(), extra], 0)[None]
        tokens = (tokens_template - n + 2 * N).repeat(N, 1)  # non-operand tokens after the 2N operand rows
        tokens[:, pos_a], tokens[:, pos_b] = torch.arange(N), N + torch.arange(N)
        return forward(params, tokens[None], spec)[0]

    return f


def isolate_frequency(E: Float[Tensor, "p d"], k: int) -> Float[Tensor, "p d"]:
    """E with only its constant and frequency-k (cos k, sin k) components along the token axis."""
    B = fourier_basis(E.shape[0])[[0, 2 * k - 1, 2 * k]]
    return (B.T @ (B @ E.double())).to(E.dtype)


def gradient_cosines(f: LogitFn, E: Float[Tensor, "p d"], n_triples: int = 2000, seed: int = 0) -> Float[Tensor, "n_triples"]:
    """cos(dQ_abc/dE_a, dQ_abc/dE_b) for seeded random triples (a, b, c) in Z_p^3 (Zhong et al. Sec. 4)."""
    p = E.shape[0]
    gen = torch.Generator().manual_seed(seed)
    a, b, c = torch.randint(0, p, (3, n_triples), generator=gen)
    e_a, e_b = E[a].detach().clone().requires_grad_(True), E[b].detach().clone().requires_grad_(True)
    q = f(e_a, e_b)
    g_a, g_b = torch.autograd.grad(q.gather(1, c[:, None]).sum(), (e_a, e_b))  # examples are independent
    return torch.nn.functional.cosine_similarity(g_a.double(), g_b.double(), dim=1, eps=1e-30)


def _table(p: int) -> tuple[Tensor, Tensor]:
    """Operands a, b (p^2,) of every pair, a-major."""
    return tuple(x.reshape(-1) for x in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))


def table_logits(f: LogitFn, E: Float[Tensor, "p d"]) -> Float[Tensor, "N n"]:
    """Logits (float64) on every pair (a, b), a-major."""
    a, b = _table(E.shape[0])
    with torch.no_grad():
        return f(E[a], E[b]).double()


def correct_logits_by_sum_and_distance(logits: Float[Tensor, "N n"]) -> Float[Tensor, "p p"]:
    """q[s, d]: the logit of the correct answer s = (a+b) mod p on the input with (a-b) mod p = d
    (logits on every pair, a-major, p^2 rows: ``table_logits``)."""
    p = math.isqrt(logits.shape[0])
    a, b = _table(p)
    q = torch.empty(p, p, dtype=torch.float64)
    q[(a + b) % p, (a - b) % p] = logits[torch.arange(len(a)), (a + b) % p]
    return q


def circle_shares(logits: Float[Tensor, "N n"], key_frequencies: list[int]) -> dict[int, float]:
    """Each key frequency's share of the logit variance along the key frequencies' directions
    cos/sin(w_k (a + b)) (logits on every pair, a-major, p^2 rows); the shares sum to 1."""
    p = math.isqrt(logits.shape[0])
    a, b = _table(p)
    var = {k: float(logit_variance_explained(logits[None], answer_directions(((a + b) % p).numpy(), p, [k]))[0])
           for k in key_frequencies}
    total = sum(var.values())
    return {k: v / total if total > 0 else float("nan") for k, v in var.items()}


def shuffled_circle_share(logits: Float[Tensor, "N n"], key_frequencies: list[int], draws: int = CIRCLE_SHUFFLES,
                          seed: int = 0, quantile: float = 0.99) -> float:
    """The ``quantile`` over ``draws`` seeded shuffles of the logits' rows over the pairs of the largest
    key circle's logit variance, as a share of the real key circles' variance (``circle_shares``'
    denominator): the share a circle has by chance, the maximum over the key circles as the report
    looks at each. Chance is about 2 / p^2 of the logit variance per circle (p = 23: 0.4%), the
    99% quantile a few times that, and near 0 in the real key circles of a model that does not use them."""
    p = math.isqrt(logits.shape[0])
    a, b = _table(p)
    z = ((a + b) % p).numpy()
    centred = logits.double() - logits.double().mean(0, keepdim=True)
    D = answer_directions(z, p, key_frequencies)  # (2F, N): cos and sin of each key circle, orthonormal
    real = (D @ centred).pow(2).sum()
    perms = seeded_permutations(p * p, draws, seed)
    tops = torch.cat([torch.matmul(D[:, perms[i : i + 16]].transpose(0, 1), centred).pow(2).sum(-1).unflatten(-1, (-1, 2)).sum(-1).amax(-1)
                      for i in range(0, draws, 16)])  # (draws,): the largest circle's variance per shuffle
    return float(torch.quantile(tops / real.clamp_min(1e-30), quantile))


def distance_irrelevance(q: Float[Tensor, "p p"]) -> float:
    """mean_d std_s q[s, d] / std q (Zhong et al.; population std as numpy's). Clock ~1, Pizza low."""
    return float(q.std(0, correction=0).mean() / q.std(correction=0).clamp_min(1e-30))


@dataclass
class AlgorithmMeasures:
    """Both measures for one embedding (the whole model, or one isolated frequency)."""

    gradient_symmetricity: float  # mean cosine over the triples (the paper's number)
    symmetric_share: float  # share of triples with cosine > 0.99
    distance_irrelevance: float
    verdict: str  # clock | pizza | unclear
    cosines: np.ndarray  # (n_triples,)
    logit_by_distance: np.ndarray  # (p,): mean over s of q[s, d], the paper's "logit vs a - b"


def classify(symmetricity: float, irrelevance: float) -> str:
    """pizza: symmetric gradients and a distance-dependent correct logit; clock: the opposite; else unclear."""
    if symmetricity >= PIZZA_SYMMETRICITY and irrelevance <= PIZZA_DISTANCE_IRRELEVANCE:
        return "pizza"
    if symmetricity < PIZZA_SYMMETRICITY and irrelevance > PIZZA_DISTANCE_IRRELEVANCE:
        return "clock"
    return "unclear"


def measure(f: LogitFn, E: Float[Tensor, "p d"], n_triples: int = 2000, seed: int = 0,
            logits: Tensor | None = None) -> AlgorithmMeasures:
    """Gradient symmetricity, its share above 0.99, distance irrelevance and the verdict for (f, E)
    (``logits``: ``table_logits(f, E)`` when already computed)."""
    cos = gradient_cosines(f, E, n_triples, seed)
    q = correct_logits_by_sum_and_distance(table_logits(f, E) if logits is None else logits)
    sym, di = float(cos.mean()), distance_irrelevance(q)
    return AlgorithmMeasures(sym, float((cos > SYMMETRIC_COSINE).double().mean()), di, classify(sym, di),
                             cos.numpy(), q.mean(0).numpy())


@dataclass
class AlgorithmResult:
    overall: AlgorithmMeasures  # the whole model
    per_frequency: dict[int, AlgorithmMeasures]  # key frequency -> measures with only that circle kept
    circle_shares: dict[int, float]  # key frequency -> its share of the key-frequency logit variance
    chance_share: float  # shuffled_circle_share: a circle's share by chance (99% quantile)
    verdict: str  # clock | pizza | mixed | undetermined
    reason: str

    @property
    def min_share(self) -> float:
        """The share below which a circle is minor: ``MIN_CIRCLE_SHARE``, or chance where that is larger."""
        return max(MIN_CIRCLE_SHARE, self.chance_share)

    def minor(self, k: int) -> bool:
        return self.circle_shares[k] < self.min_share


def combine(per_frequency: dict[int, AlgorithmMeasures], shares: dict[int, float], min_share: float = MIN_CIRCLE_SHARE) -> tuple[str, str]:
    """Over the circles that are not minor (share below ``min_share``): clock / pizza when every one
    says so, mixed when both occur, else undetermined."""
    if not per_frequency:
        return "undetermined", "no key frequencies"
    minor = [k for k in per_frequency if shares[k] < min_share]
    left_out = (f"; left out: frequency {', '.join(f'{k} ({shares[k]:.2%} of the key-frequency logit variance)' for k in minor)}"
                if minor else "")
    kinds = {m.verdict for k, m in per_frequency.items() if k not in minor}
    if not kinds:
        return "undetermined", "every key frequency's circle is minor" + left_out
    if kinds == {"clock"} or kinds == {"pizza"}:
        return kinds.pop(), ("every key frequency agrees" if not minor else "every other key frequency agrees") + left_out
    if {"clock", "pizza"} <= kinds:
        return "mixed", "clock and pizza circles side by side" + left_out
    return "undetermined", "some key frequencies are neither clock nor pizza" + left_out


def algorithm(f: LogitFn, E: Float[Tensor, "p d"], key_frequencies: list[int], n_triples: int = 2000,
              seed: int = 0) -> AlgorithmResult:
    """Measures of the whole model and of each key frequency's isolated circle, each circle's share of
    the model's logits and its chance level (``shuffled_circle_share``), and the verdict."""
    logits = table_logits(f, E)
    overall = measure(f, E, n_triples, seed, logits)
    per = {k: measure(f, isolate_frequency(E, k), n_triples, seed) for k in key_frequencies}
    shares = circle_shares(logits, key_frequencies)
    chance = shuffled_circle_share(logits, key_frequencies, seed=seed) if key_frequencies else 0.0
    verdict, reason = combine(per, shares, max(MIN_CIRCLE_SHARE, chance))
    return AlgorithmResult(overall, per, shares, chance, verdict, reason)
