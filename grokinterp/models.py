"""TransformerLens ``HookedTransformer`` configurations for the papers' models.

``nanda-1l`` (Nanda et al. 2023, the TransformerLens grokking demo): 1 layer, d_model 128, 4 heads
of 32, d_mlp 512, ReLU, no LayerNorm, learned positions, all biases frozen at zero. Inputs are the
3 tokens ``x y =``; the answer is read at the ``=`` position.

``power-2l`` (Power et al. 2022, A.1.2): a causal decoder with 2 layers, width 128, 4 heads,
d_mlp 512 (393k non-embedding parameters), biases frozen at zero. We use TransformerLens'
pre-LayerNorm blocks and learned positions (Power's code: post-LN, fixed sinusoidal positions).
Inputs are the 4 tokens ``x op y =``; the answer is read at ``=``.

``power-2l-post``: Power et al.'s own block, from their public code: post-LayerNorm blocks
(``x = LN(x + attn(x)); x = LN(x + mlp(x))``, no final LayerNorm), fixed sinusoidal positions and
PyTorch's default initialisation (embeddings N(0, 1), linear weights U(+-1/sqrt(fan_in))). Same
parameter names and shapes as ``power-2l`` (less ``ln_final``). HookedTransformer cannot express
post-LN blocks, so ``build_model`` returns ``hooked.PostLNTransformer`` for it: a TransformerLens
``HookedRootModule`` with a HookedTransformer's hook names.

``tiny-1l``: nanda-1l at d_model 64, 4 heads of 16, d_mlp 256, for tests and quick experiments.

``add5-1l`` (1 layer, d_model 128, 4 heads, d_mlp 512) and the attention-only, pre-LN ``attn-1l`` /
``attn-2l`` (d_model 48, 4 heads of 12) are for the sequence tasks of ``grokinterp.sequences``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    n_layers: int
    d_model: int
    n_heads: int
    d_mlp: int
    normalization_type: str | None
    op_token: bool
    attn_only: bool = False
    act_fn: str = "relu"
    post_ln: bool = False  # Power et al.'s code: LayerNorm after each residual add, none before the unembedding
    sinusoidal_positions: bool = False  # fixed (untrained) sinusoidal W_pos, as in Power et al.'s code
    torch_init: bool = False  # PyTorch's default init instead of TransformerLens'
    attention_rate: float = 1.0  # Zhong et al.'s alpha (engine.forward); a run's own: RunConfig.spec; HookedTransformer has only 1

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


MODELS: dict[str, ModelSpec] = {
    "nanda-1l": ModelSpec(1, 128, 4, 512, None, op_token=False),
    "power-2l": ModelSpec(2, 128, 4, 512, "LN", op_token=True),
    "power-2l-post": ModelSpec(2, 128, 4, 512, "LN", op_token=True, post_ln=True, sinusoidal_positions=True,
                               torch_init=True),
    "tiny-1l": ModelSpec(1, 64, 4, 256, None, op_token=False),
    # phase-change models (Nanda's grokking analysis): sequence tasks, all positions predicted
    "add5-1l": ModelSpec(1, 128, 4, 512, None, op_token=False),
    "attn-1l": ModelSpec(1, 48, 4, 192, "LN", op_token=False, attn_only=True),
    "attn-2l": ModelSpec(2, 48, 4, 192, "LN", op_token=False, attn_only=True),
}


class ModelError(ValueError):
    """An unknown model name or a config that does not fit."""


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def hooked_config(model: str, d_vocab: int, d_vocab_out: int, n_ctx: int, seed: int, device: str = "cpu"):
    """The ``HookedTransformerConfig`` of a named model for a vocabulary and context length."""
    from transformer_lens import HookedTransformerConfig

    spec = model_spec(model)
    return HookedTransformerConfig(
        n_layers=spec.n_layers,
        d_model=spec.d_model,
        d_head=spec.d_head,
        n_heads=spec.n_heads,
        d_mlp=spec.d_mlp,
        d_vocab=d_vocab,
        d_vocab_out=d_vocab_out,
        n_ctx=n_ctx,
        act_fn=spec.act_fn,
        normalization_type=spec.normalization_type,
        attn_only=spec.attn_only,
        device=device,
        seed=seed,
        default_prepend_bos=False,
    )


def build_model(model: str, d_vocab: int, d_vocab_out: int, n_ctx: int, seed: int, device: str = "cpu"):
    """A freshly initialised hooked model, seeded: a ``HookedTransformer`` (TransformerLens init), or
    for post-LN models a ``hooked.PostLNTransformer`` holding ``init_params`` (the engine's init)."""
    import torch
    from transformer_lens import HookedTransformer

    cfg = hooked_config(model, d_vocab, d_vocab_out, n_ctx, seed, device)
    if model_spec(model).post_ln:
        from .hooked import PostLNTransformer

        ht = PostLNTransformer(cfg)
        init = init_params(model, d_vocab, d_vocab_out, n_ctx, seed)
        with torch.no_grad():
            for name, p in ht.named_parameters():
                p.copy_(init[name])
        ht = ht.to(device)
    else:
        ht = HookedTransformer(cfg)
    for name, p in ht.named_parameters():
        if not is_trainable(name, model_spec(model)):
            p.requires_grad_(False)
    return ht


def parameter_shapes(model: str, d_vocab: int, d_vocab_out: int, n_ctx: int) -> dict[str, tuple[int, ...]]:
    """HookedTransformer parameter names and shapes of a named model, in ``named_parameters()`` order,
    without importing TransformerLens (a test compares it with ``build_model(...).named_parameters()``)."""
    s = model_spec(model)
    d, H, dh = s.d_model, s.n_heads, s.d_head
    shapes = {"embed.W_E": (d_vocab, d), "pos_embed.W_pos": (n_ctx, d)}
    for layer in range(s.n_layers):
        b = f"blocks.{layer}."
        if s.normalization_type:
            shapes.update({b + "ln1.w": (d,), b + "ln1.b": (d,)})
            if not s.attn_only:
                shapes.update({b + "ln2.w": (d,), b + "ln2.b": (d,)})
        shapes.update({b + "attn.W_Q": (H, d, dh), b + "attn.W_O": (H, dh, d), b + "attn.b_Q": (H, dh), b + "attn.b_O": (d,),
                       b + "attn.W_K": (H, d, dh), b + "attn.W_V": (H, d, dh), b + "attn.b_K": (H, dh), b + "attn.b_V": (H, dh)})
        if not s.attn_only:
            shapes.update({b + "mlp.W_in": (d, s.d_mlp), b + "mlp.b_in": (s.d_mlp,), b + "mlp.W_out": (s.d_mlp, d), b + "mlp.b_out": (d,)})
    if s.normalization_type and not s.post_ln:
        shapes.update({"ln_final.w": (d,), "ln_final.b": (d,)})
    shapes.update({"unembed.W_U": (d, d_vocab_out), "unembed.b_U": (d_vocab_out,)})
    return shapes


def init_params(model: str, d_vocab: int, d_vocab_out: int, n_ctx: int, seed: int) -> dict:
    """The parameters ``build_model(..., seed=seed)`` starts from, without building a HookedTransformer.

    TransformerLens' "gpt2" init: after ``torch.manual_seed(seed)`` every ``W_*`` matrix, in
    ``named_parameters()`` order, is drawn from N(0, (0.8 / sqrt(d_model))^2) on the CPU; LayerNorm
    weights are 1 and all biases 0. A test checks the result equals ``build_model``'s exactly.
    With ``torch_init`` (Power et al.'s code): ``W_E`` from N(0, 1) (``nn.Embedding``), every other
    matrix from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``nn.Linear``; fan_in is d_model, or d_mlp for
    ``W_out``). ``sinusoidal_positions`` sets ``W_pos`` to ``sinusoidal_positions(n_ctx, d_model)``.
    """
    import torch

    spec = model_spec(model)
    std = 0.8 / math.sqrt(spec.d_model)
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in parameter_shapes(model, d_vocab, d_vocab_out, n_ctx).items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "W_pos" and spec.sinusoidal_positions:
            params[name] = sinusoidal_positions(n_ctx, spec.d_model)
        elif leaf.startswith("W_") and spec.torch_init:
            if leaf == "W_E":
                params[name] = torch.empty(shape).normal_(0.0, 1.0, generator=gen)
            else:
                bound = 1 / math.sqrt(spec.d_mlp if leaf == "W_out" else spec.d_model)
                params[name] = torch.empty(shape).uniform_(-bound, bound, generator=gen)
        elif leaf.startswith("W_"):
            params[name] = torch.empty(shape).normal_(0.0, std, generator=gen)
        else:
            params[name] = torch.ones(shape) if leaf == "w" else torch.zeros(shape)
    return params


def sinusoidal_positions(n_ctx: int, d_model: int):
    """(n_ctx, d_model) position code of Power et al.'s code (Vaswani et al.): sin(pos / 10000^(i/d)) at
    even i, cos(pos / 10000^((i-1)/d)) at odd i."""
    import torch

    pos = torch.arange(n_ctx, dtype=torch.float64)[:, None]
    i = torch.arange(d_model)
    angle = pos / 10000 ** ((i - i % 2) / d_model)
    return torch.where(i % 2 == 0, angle.sin(), angle.cos()).float()


def is_trainable(name: str, spec: ModelSpec | None = None) -> bool:
    """Biases of attention, MLP and unembedding stay frozen at zero (as in both papers' code); so do
    sinusoidal positions."""
    leaf = name.rsplit(".", 1)[-1]
    return not leaf.startswith("b_") and not (leaf == "W_pos" and spec is not None and spec.sinusoidal_positions)


def non_embedding_parameters(ht) -> int:
    """Trainable weights in the blocks (Power et al. count: about 4e5 for power-2l)."""
    return sum(p.numel() for n, p in ht.named_parameters() if n.startswith("blocks.") and p.requires_grad)
