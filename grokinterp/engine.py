"""The fast training path: a HookedTransformer forward over stacked parameters, and AdamW.

Parameters keep TransformerLens names and shapes with a leading ensemble axis E
(``embed.W_E``: (E, d_vocab, d_model), ``blocks.0.attn.W_Q``: (E, n_heads, d_model, d_head), ...),
so one model is E = 1 and an ensemble of seeds / weight decays / data fractions is one batched
computation. The forward is the HookedTransformer's arithmetic, reordered to compute only what
the loss needs:

- layer 0 reads token + position embeddings, so its LayerNorm and Q/K/V projections are computed
  once per (token, position) on the d_vocab x n_ctx table and gathered per example;
- the last layer's queries, MLP and unembedding run only at the final (``=``) position.

With ``spec.post_ln`` (Power et al.'s code) each LayerNorm follows its residual add instead of
preceding its sublayer, and there is no final LayerNorm.

With ``attention_rate`` alpha (Zhong et al. 2023, "The Clock and the Pizza") every attention pattern is
alpha * softmax(scores) + (1 - alpha) * uniform over the keys a query may see; alpha = 1 (or None) is
the plain transformer, alpha = 0 constant attention.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from .models import ModelSpec

LN_EPS = 1e-5  # TransformerLens' default


def layer_norm(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """TransformerLens LayerNorm over the last axis; w, b: (E, d_model) broadcast over the middle."""
    x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + LN_EPS).sqrt()
    shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[-1],)
    return x * w.reshape(shape) + b.reshape(shape)


def _gather(table: Tensor, tokens: Tensor) -> Tensor:
    """table (E, V, T', *rest), tokens (E, B, T') -> (E, B, T', *rest): table[e, tokens[e,b,t], t]."""
    E, V, T = table.shape[:3]
    offsets = torch.arange(T, device=tokens.device) + V * T * torch.arange(E, device=tokens.device)[:, None, None]
    rows = torch.index_select(table.reshape(E * V * T, *table.shape[3:]), 0, (tokens * T + offsets).reshape(-1))
    return rows.reshape(E, tokens.shape[1], T, *table.shape[3:])


def _project(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """x (E, *, d_model), W (E, H, d_model, d_head), b (E, H, d_head) -> (E, *, H, d_head)."""
    E = x.shape[0]
    out = torch.einsum("end,ehdk->enhk", x.reshape(E, -1, x.shape[-1]), W) + b[:, None]
    return out.reshape(*x.shape[:-1], *W.shape[1:2], W.shape[-1])


def _affine(equation: str, x: Tensor, W: Tensor, b: Tensor, fused: bool) -> Tensor:
    """x (E, *, d_in) @ W (E, d_in, d_out) + b (E, d_out), as ``einsum(equation)`` + b, or ``fused``:
    the bias added inside the matrix product (``baddbmm``), one pass over the output instead of two."""
    if not fused:
        return torch.einsum(equation, x, W) + b.reshape(b.shape[0], *(1,) * (x.dim() - 2), b.shape[-1])
    out = torch.baddbmm(b[:, None], x.reshape(x.shape[0], -1, x.shape[-1]), W)
    return out.reshape(*x.shape[:-1], W.shape[-1])


def forward(
    params: dict[str, Tensor], tokens: Int[Tensor, "E batch pos"], spec: ModelSpec, cache: dict | None = None,
    dropout: Callable[[Tensor], Tensor] | None = None, attention_rate: Float[Tensor, "E"] | None = None, fused: bool = False,
) -> Float[Tensor, "E batch d_vocab_out"]:
    """Logits at the final position for every example of every ensemble member.

    With ``cache`` (a dict), the final position's last-layer MLP activations are stored under
    ``"mlp_post"`` (E, batch, d_mlp), as ``blocks.{L-1}.mlp.hook_post[:, -1]`` would give.
    ``dropout`` (training only) is applied to every attention and MLP output before it is added to
    the residual stream (residual dropout, Power et al.); it maps (E, batch, pos, d_model) to itself.
    ``attention_rate`` (E,): each member's alpha in [0, 1] (an ensemble over rates); None: every member
    has ``spec.attention_rate`` (a run's spec, ``RunConfig.spec``), and at 1 no mixing is computed.
    ``fused`` (analyses, without gradients): biases added inside the matrix products and ReLU in place,
    and a one-layer model without LayerNorm (Nanda et al.'s) computed by ``_one_layer_forward_by_rows``
    (2-3x faster on the CPU; docs/benchmarks.md). Both round otherwise than the plain order of
    operations (logits agree to ~1e-6 relative), so training and its logged metrics keep the unfused
    arithmetic that every trained run was made with.
    """
    E, B, T = tokens.shape
    if attention_rate is None and spec.attention_rate != 1:
        attention_rate = torch.full((E,), spec.attention_rate, device=tokens.device)
    if fused and spec.n_layers == 1 and spec.normalization_type is None and dropout is None:
        return _one_layer_forward_by_rows(params, tokens, spec, cache, attention_rate)
    ln = spec.normalization_type is not None
    pre_ln, post_ln = ln and not spec.post_ln, ln and spec.post_ln
    table = params["embed.W_E"][:, :, None, :] + params["pos_embed.W_pos"][:, None, :T, :]  # (E, V, T, d)
    resid = _gather(table, tokens)  # (E, B, T, d)
    for layer in range(spec.n_layers):
        p = lambda k: params[f"blocks.{layer}.{k}"]  # noqa: E731
        last = layer == spec.n_layers - 1
        qpos = slice(T - 1, T) if last else slice(0, T)
        src = table if layer == 0 else resid  # layer 0: project the (token, position) table once
        h = layer_norm(src, p("ln1.w"), p("ln1.b")) if pre_ln else src
        q, k, v = (_project(x, p(f"attn.W_{n}"), p(f"attn.b_{n}")) for x, n in ((h[:, :, qpos], "Q"), (h, "K"), (h, "V")))
        if layer == 0:
            q, k, v = _gather(q, tokens[:, :, qpos]), _gather(k, tokens), _gather(v, tokens)
        # contexts are a few tokens long: broadcast products beat thousands of tiny matmuls
        scores = (q[:, :, :, None] * k[:, :, None]).sum(-1) / math.sqrt(spec.d_head)  # (E, B, q, k, H)
        if not last:
            causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).triu(1)
            scores = scores.masked_fill(causal[:, :, None], float("-inf"))
        pattern = scores.softmax(3)
        if attention_rate is not None:
            pattern = mix_uniform_attention(pattern, attention_rate, causal=not last)
        z = (pattern[..., None] * v[:, :, None]).sum(3)  # (E, B, q, H, d_head)
        attn_out = torch.einsum("ebqhd,ehdm->ebqm", z, p("attn.W_O")) + p("attn.b_O")[:, None, None]
        resid = resid[:, :, qpos] + (dropout(attn_out) if dropout else attn_out)
        if post_ln:
            resid = layer_norm(resid, p("ln1.w"), p("ln1.b"))
        if not spec.attn_only:
            h = layer_norm(resid, p("ln2.w"), p("ln2.b")) if pre_ln else resid
            pre = _affine("ebqm,emn->ebqn", h, p("mlp.W_in"), p("mlp.b_in"), fused)
            post = pre.relu_() if fused else pre.relu()
            if cache is not None and last:
                cache["mlp_post"] = post[:, :, -1]
            mlp_out = _affine("ebqn,enm->ebqm", post, p("mlp.W_out"), p("mlp.b_out"), fused)
            resid = resid + (dropout(mlp_out) if dropout else mlp_out)
            if post_ln:
                resid = layer_norm(resid, p("ln2.w"), p("ln2.b"))
    final = resid[:, :, -1]
    if pre_ln:
        final = layer_norm(final, params["ln_final.w"], params["ln_final.b"])
    return _affine("ebm,emv->ebv", final, params["unembed.W_U"], params["unembed.b_U"], fused)


def _one_layer_forward_by_rows(params: dict[str, Tensor], tokens: Tensor, spec: ModelSpec, cache: dict | None,
                               attention_rate: Tensor | None) -> Tensor:
    """``forward`` of a one-layer model without LayerNorm, reordered for analyses (same logits up to rounding).

    Without LayerNorm the final position's residual stream is linear in its attention pattern A (E, B, T, H):
    resid = x[tok_last, T-1] + b_O + sum_{t,h} A[t,h] v[tok_t, t, h] W_O[h], with x = W_E + W_pos and
    v = x W_V + b_V. So the MLP input (resid W_in + b_in) and the direct logits (resid W_U) are weighted
    sums of T*H + 1 rows of small per-(token, position, head) tables, which ``embedding_bag`` adds up
    per example, and the MLP's contribution to the logits is post @ (W_out W_U): per example
    d_mlp * (T*H + 1 + d_vocab_out) multiply-adds instead of ~d_model * (2 d_mlp + d_vocab_out + ...).
    The scores are a (V, V, T, H) table too: the last position's query depends only on its token.
    """
    E, B, T = tokens.shape
    p = lambda k: params[f"blocks.0.{k}"]  # noqa: E731
    x = params["embed.W_E"][:, :, None, :] + params["pos_embed.W_pos"][:, None, :T, :]  # (E, V, T, d)
    V, dev = x.shape[1], tokens.device
    q = _project(x[:, :, T - 1], p("attn.W_Q"), p("attn.b_Q"))  # (E, V, H, d_head)
    k, v = (_project(x, p(f"attn.W_{n}"), p(f"attn.b_{n}")) for n in "KV")  # (E, V, T, H, d_head)
    H = q.shape[2]
    member = torch.arange(E, device=dev)[:, None, None]
    score_table = torch.einsum("euhk,evthk->euvth", q, k).reshape(E * V * V * T, H) / math.sqrt(spec.d_head)
    where = (tokens[:, :, T - 1 :] * V + tokens) * T + torch.arange(T, device=dev) + V * V * T * member  # (E, B, T)
    pattern = score_table[where.reshape(-1)].reshape(E, B, 1, T, H).softmax(3)
    if attention_rate is not None:
        pattern = mix_uniform_attention(pattern, attention_rate, causal=False)
    n_rows = V * T * H + V  # value rows (token, position, head), then the last position's direct rows (token)
    rows = ((tokens * T + torch.arange(T, device=dev)) * H)[..., None] + torch.arange(H, device=dev)  # (E, B, T, H)
    rows = torch.cat([rows.reshape(E, B, T * H), V * T * H + tokens[:, :, T - 1 :]], 2) + n_rows * member
    weights = torch.cat([pattern[:, :, 0].reshape(E, B, T * H), pattern.new_ones(E, B, 1)], 2)
    rows, weights = rows.reshape(E * B, -1), weights.reshape(E * B, -1)
    W_O, b_O, W_U = p("attn.W_O"), p("attn.b_O")[:, None], params["unembed.W_U"]

    def read_by(M: Tensor, bias: Tensor) -> Tensor:
        """(E, B, n): resid @ M + bias for M (E, d_model, n), bias (E, n) (b_O @ M already in ``bias``)."""
        value_rows = torch.einsum("evthk,ehkn->evthn", v, torch.einsum("ehkm,emn->ehkn", W_O, M))
        direct_rows = torch.baddbmm(bias[:, None], x[:, :, T - 1], M)
        table = torch.cat([value_rows.reshape(E, V * T * H, -1), direct_rows], 1).reshape(E * n_rows, -1)
        return F.embedding_bag(rows, table, per_sample_weights=weights, mode="sum").reshape(E, B, -1)

    logit_bias = torch.baddbmm(params["unembed.b_U"][:, None], b_O, W_U)[:, 0]
    if spec.attn_only:
        return read_by(W_U, logit_bias)
    W_in = p("mlp.W_in")
    post = read_by(W_in, torch.baddbmm(p("mlp.b_in")[:, None], b_O, W_in)[:, 0]).relu_()
    if cache is not None:
        cache["mlp_post"] = post
    logit_bias = torch.baddbmm(logit_bias[:, None], p("mlp.b_out")[:, None], W_U)[:, 0]
    return torch.baddbmm(read_by(W_U, logit_bias), post, torch.bmm(p("mlp.W_out"), W_U))


def mix_uniform_attention(pattern: Float[Tensor, "E B q k H"], rate: Float[Tensor, "E"], causal: bool) -> Tensor:
    """alpha * pattern + (1 - alpha) * uniform attention over the visible keys (Zhong et al. 2023).

    The uniform pattern gives each of the keys a query sees (all k; with ``causal``, keys <= the query)
    the weight 1 / their number, so the result is still a distribution over keys.
    """
    q, k = pattern.shape[2], pattern.shape[3]
    visible = torch.ones(q, k, device=pattern.device).tril(k - q) if causal else torch.ones(q, k, device=pattern.device)
    uniform = (visible / visible.sum(1, keepdim=True))[:, :, None]  # (q, k, 1)
    a = rate.to(pattern.dtype).reshape(-1, 1, 1, 1, 1)
    return a * pattern + (1 - a) * uniform


def stablemax_log_probs(logits: Tensor) -> Tensor:
    """log of StableMax (Prieto et al. 2025): s(x) = x + 1 for x >= 0, 1 / (1 - x) otherwise."""
    s = torch.where(logits >= 0, logits + 1, 1 / (1 - logits.clamp(max=0)))
    return s.log() - s.sum(-1, keepdim=True).log()


def per_example_loss(logits: Tensor, labels: Tensor, loss: str = "ce") -> Tensor:
    """Cross-entropy in float64 (log-softmax, or log-StableMax), shape = labels.shape."""
    logits = logits.double()
    logp = stablemax_log_probs(logits) if loss == "stablemax" else logits.log_softmax(-1)
    return -logp.gather(-1, labels[..., None])[..., 0]


class AdamW:
    """torch.optim.AdamW's update with a per-model learning rate and weight decay (shape (E,)).

    The step count lives on the device (a 0-dim float64 tensor ``t``) and the bias corrections and
    linear warm-up over ``warmup`` updates are computed from it there, so a step has no host-side
    scalars and can be captured in a CUDA graph.

    Optional gradient transforms, applied between backward and the update, per model and tensor:
    Grokfast-EMA (Lee et al. 2024): mu <- alpha mu + (1 - alpha) g; g <- g + lambda mu.
    Perpendicular gradient (Prieto et al. 2025): g <- g - (w.g / w.w) w, rescaled to |g|.
    With ``decay_to`` (parameters of the same shapes), weight decay pulls toward those weights
    instead of zero (Power et al. Fig. 2, "weight decay towards init"), for the models where
    ``decay_to_on`` is true.
    """

    def __init__(self, params: dict[str, Tensor], lr: Tensor, wd: Tensor, betas=(0.9, 0.98), eps=1e-8, warmup: int = 0,
                 grokfast: tuple[Tensor, Tensor] | None = None, perpendicular: Tensor | None = None,
                 decay_to: dict[str, Tensor] | None = None, decay_to_on: Tensor | None = None):
        self.params, self.lr, self.wd, self.betas, self.eps, self.warmup = params, lr, wd, betas, eps, warmup
        self.grokfast, self.perpendicular = grokfast, perpendicular
        self.decay_to, self.decay_to_on = decay_to, decay_to_on
        self.state = {f"{kind}.{n}": torch.zeros_like(p) for n, p in params.items() for kind in ("m", "v")}
        if grokfast is not None:
            self.state.update({f"ema.{n}": torch.zeros_like(p) for n, p in params.items()})
        self.t = torch.zeros((), dtype=torch.float64, device=lr.device)

    @staticmethod
    def _per_model(x: Tensor, like: Tensor) -> Tensor:
        return x.reshape((-1,) + (1,) * (like.dim() - 1))

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, sqrt_c2 = 1 - b1**self.t, (1 - b2**self.t).sqrt()
        lr_all = self.lr * (self.t / self.warmup).clamp(max=1.0) if self.warmup else self.lr
        for name, p in self.params.items():
            g = p.grad
            if self.perpendicular is not None:
                dims = tuple(range(1, p.dim()))
                norm_g = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
                proj = (p * g).sum(dims, keepdim=True) / (p * p).sum(dims, keepdim=True).clamp_min(1e-30)
                g_perp = g - proj * p
                g_perp = g_perp * norm_g / torch.linalg.vector_norm(g_perp, dim=dims, keepdim=True).clamp_min(1e-30)
                on = self._per_model(self.perpendicular, p)
                g = torch.where(on, g_perp, g)
            if self.grokfast is not None:
                alpha, lam = (self._per_model(x, p) for x in self.grokfast)
                ema = self.state[f"ema.{name}"]
                ema.mul_(alpha).add_((1 - alpha) * g)
                g = g + lam * ema
            lr = self._per_model(lr_all, p)
            decay = lr * self._per_model(self.wd, p)
            p.mul_(1 - decay)
            if self.decay_to is not None:  # p <- p - decay (p - init) for the models that asked (others: + 0)
                p.add_(decay * self._per_model(self.decay_to_on, p) * self.decay_to[name])
            m, v = self.state[f"m.{name}"], self.state[f"v.{name}"]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / sqrt_c2).add_(self.eps)
            p.sub_(lr / c1 * m / denom)
