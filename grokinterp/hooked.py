"""Power et al.'s post-LayerNorm transformer as a TransformerLens ``HookedRootModule``.

HookedTransformer's blocks apply LayerNorm before each sublayer; Power et al.'s code applies it
after each residual add and has no final LayerNorm:

    x = LN1(x + attn(x));  x = LN2(x + mlp(x));  logits = x W_U + b_U

This module builds that block from TransformerLens' own components (``Embed``, ``PosEmbed``,
``Attention``, ``LayerNorm``, ``MLP``, ``Unembed``) with a HookedTransformer's hook names, so
``run_with_cache``, ``run_with_hooks`` and ablations work as on any other run:

    hook_embed, hook_pos_embed
    blocks.{l}.hook_resid_pre       the block's input
    blocks.{l}.attn.hook_q/k/v/z/attn_scores/pattern
    blocks.{l}.hook_attn_out        what attention adds to the residual stream
    blocks.{l}.ln1.hook_scale/hook_normalized     LayerNorm of (resid_pre + attn_out)
    blocks.{l}.hook_resid_mid       LN1's output: the stream the MLP reads and adds to
    blocks.{l}.mlp.hook_pre/post, blocks.{l}.hook_mlp_out
    blocks.{l}.ln2.hook_scale/hook_normalized     LayerNorm of (resid_mid + mlp_out)
    blocks.{l}.hook_resid_post      LN2's output: the block's output

Parameters have the names and shapes of ``models.parameter_shapes`` (a HookedTransformer's, less
``ln_final``), so a checkpoint loads by name. TransformerLens is imported here at module level:
import this module only where a model is built (``models.build_model`` does so lazily).
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import HookedRootModule, HookedTransformerConfig
from transformer_lens.components import MLP, Attention, Embed, LayerNorm, PosEmbed, Unembed
from transformer_lens.hook_points import HookPoint


class PostLNBlock(nn.Module):
    """One block: ``x = LN1(x + attn(x)); x = LN2(x + mlp(x))`` (Power et al.'s order)."""

    def __init__(self, cfg: HookedTransformerConfig, layer: int):
        super().__init__()
        # registration order = named_parameters() order = models.parameter_shapes order
        self.ln1 = LayerNorm(cfg)
        self.ln2 = LayerNorm(cfg)
        self.attn = Attention(cfg, "global", layer)
        self.mlp = MLP(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid_pre: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out = self.hook_attn_out(self.attn(resid_pre, resid_pre, resid_pre))
        resid_mid = self.hook_resid_mid(self.ln1(resid_pre + attn_out))
        mlp_out = self.hook_mlp_out(self.mlp(resid_mid))
        return self.hook_resid_post(self.ln2(resid_mid + mlp_out))


class PostLNTransformer(HookedRootModule):
    """Power et al.'s decoder (``power-2l-post``): token + position embedding, post-LN blocks, unembedding.

    ``forward(tokens)`` maps token ids (batch, pos) to logits (batch, pos, d_vocab_out); the answer is
    read at the last position. Parameters start uninitialised: ``models.build_model`` fills them.
    """

    def __init__(self, cfg: HookedTransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = PosEmbed(cfg)
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList([PostLNBlock(cfg, layer) for layer in range(cfg.n_layers)])
        self.unembed = Unembed(cfg)
        self.setup()

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab_out"]:
        if tokens.dim() == 1:
            tokens = tokens[None]
        tokens = tokens.to(self.embed.W_E.device)
        resid = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(tokens))
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(resid)

    def to(self, *args, print_details: bool = False, **kwargs):
        """``nn.Module.to``, also taking HookedTransformer's ``print_details`` (so code written for one runs on both)."""
        return super().to(*args, **kwargs)
