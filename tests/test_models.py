import pytest
import torch

from grokinterp.engine import AdamW, forward, per_example_loss
from grokinterp.models import MODELS, ModelError, build_model, model_spec, init_params, non_embedding_parameters, parameter_shapes


def test_parameter_counts():
    nanda = build_model("nanda-1l", 114, 113, 3, seed=0)
    trainable = sum(p.numel() for p in nanda.parameters() if p.requires_grad)
    assert trainable == 114 * 128 + 3 * 128 + 4 * 4 * 128 * 32 + 2 * 128 * 512 + 128 * 113
    power = build_model("power-2l", 122, 120, 4, seed=0)
    assert 3.8e5 < non_embedding_parameters(power) < 4.2e5  # Power et al.: about 4e5
    assert all(not p.requires_grad for n, p in power.named_parameters() if n.rsplit(".", 1)[-1].startswith("b_"))


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_shapes_match_hooked_transformer(name):
    ht = build_model(name, 15, 13, 5, seed=0)
    assert list(parameter_shapes(name, 15, 13, 5).items()) == [(n, tuple(p.shape)) for n, p in ht.named_parameters()]


@pytest.mark.parametrize("name", list(MODELS))
def test_init_params_equal_hooked_transformer_init(name):
    ht = build_model(name, 15, 13, 5, seed=3)
    ours = init_params(name, 15, 13, 5, seed=3)
    assert list(ours) == [n for n, _ in ht.named_parameters()]
    for n, p in ht.named_parameters():
        assert torch.equal(ours[n], p.detach()), n
    assert not torch.equal(init_params(name, 15, 13, 5, seed=4)["embed.W_E"], ours["embed.W_E"])


def test_unknown_model():
    with pytest.raises(ModelError):
        model_spec("gpt-5")


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("name,V,T", [("nanda-1l", 114, 3), ("power-2l", 122, 4)])
def test_fast_forward_matches_hooked_transformer(name, V, T, device):
    """Logits and gradients of every parameter (biases and LayerNorm made non-trivial) agree."""
    torch.manual_seed(0)
    ht = build_model(name, V, V - 1 - (T == 4), T, seed=1)
    with torch.no_grad():
        for p in ht.parameters():
            p.add_(torch.randn_like(p) * 0.1).requires_grad_(True)
    ht = ht.to(device, print_details=False)
    params = {n: p.detach()[None].clone().requires_grad_(True) for n, p in ht.named_parameters()}
    tokens = torch.randint(0, V - 2, (200, T), device=device)
    tokens[:, -1] = V - 1
    labels = torch.randint(0, V - 1 - (T == 4), (200,), device=device)
    ref = ht(tokens)[:, -1]
    ours = forward(params, tokens[None], model_spec(name))[0]
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    per_example_loss(ref, labels).mean().backward()
    per_example_loss(ours[None], labels[None]).mean().backward()
    for n, p in ht.named_parameters():
        torch.testing.assert_close(params[n].grad[0], p.grad, rtol=1e-3, atol=1e-6, msg=n)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("attn_only", [False, True])
def test_fused_one_layer_forward_matches_the_plain_forward(attn_only, device):
    """The analyses' forward of a one-layer model without LayerNorm (read through per-token tables) gives
    the plain forward's logits and MLP activations: an ensemble of 3 with random weights and non-trivial
    biases, arbitrary tokens (not the p x p grid) and per-member attention rates."""
    import dataclasses

    torch.manual_seed(0)
    V, T = 30, 4
    spec = dataclasses.replace(model_spec("tiny-1l"), attn_only=attn_only)
    shapes = {n: s for n, s in parameter_shapes("tiny-1l", V, V - 2, T).items() if not (attn_only and ".mlp." in n)}
    params = {n: torch.randn(3, *s, device=device) * 0.3 for n, s in shapes.items()}
    tokens = torch.randint(0, V, (3, 500, T), device=device)
    for rate in (None, torch.tensor([0.0, 0.4, 1.0], device=device)):
        plain, fused = {}, {}
        expected = forward(params, tokens, spec, plain, attention_rate=rate)
        got = forward(params, tokens, spec, fused, attention_rate=rate, fused=True)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        if attn_only:
            assert "mlp_post" not in fused
        else:
            torch.testing.assert_close(fused["mlp_post"], plain["mlp_post"], rtol=1e-4, atol=1e-4)
            assert (fused["mlp_post"] == 0).float().mean() > 0.2  # the ReLU is active, not a linear model
    assert not torch.allclose(forward(params, tokens.flip(2), spec, fused=True), expected, atol=1e-3)


def _power_reference_logits(params: dict, tokens, n_layers: int, d_head: int):
    """Power et al.'s block written out plainly: all positions, causal mask, LayerNorm after each add."""
    import torch.nn.functional as F

    T = tokens.shape[1]
    x = params["embed.W_E"][tokens] + params["pos_embed.W_pos"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    for i in range(n_layers):
        p = lambda k: params[f"blocks.{i}.{k}"]  # noqa: E731
        q, k, v = (torch.einsum("btd,hdk->bhtk", x, p(f"attn.W_{n}")) + p(f"attn.b_{n}")[:, None] for n in "QKV")
        att = (q @ k.transpose(-1, -2) / d_head**0.5).masked_fill(mask, float("-inf")).softmax(-1)
        x = F.layer_norm(x + torch.einsum("bhtk,hkd->btd", att @ v, p("attn.W_O")) + p("attn.b_O"), x.shape[-1:], p("ln1.w"), p("ln1.b"))
        mlp = (x @ p("mlp.W_in") + p("mlp.b_in")).relu() @ p("mlp.W_out") + p("mlp.b_out")
        x = F.layer_norm(x + mlp, x.shape[-1:], p("ln2.w"), p("ln2.b"))
    return x[:, -1] @ params["unembed.W_U"] + params["unembed.b_U"]


def test_post_ln_forward_matches_a_plain_implementation():
    """power-2l-post: the engine's reordered forward equals Power et al.'s block, logits and gradients."""
    torch.manual_seed(0)
    V, T, spec = 20, 4, model_spec("power-2l-post")
    ref = {n: (w + torch.randn_like(w) * 0.1).requires_grad_(True) for n, w in init_params("power-2l-post", V, V - 2, T, seed=1).items()}
    ours = {n: w.detach()[None].clone().requires_grad_(True) for n, w in ref.items()}
    tokens = torch.randint(0, V, (64, T))
    labels = torch.randint(0, V - 2, (64,))
    expected = _power_reference_logits(ref, tokens, spec.n_layers, spec.d_head)
    got = forward(ours, tokens[None], spec)[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    per_example_loss(expected[None], labels[None]).mean().backward()
    per_example_loss(got[None], labels[None]).mean().backward()
    for n, w in ref.items():
        torch.testing.assert_close(ours[n].grad[0], w.grad, rtol=1e-3, atol=1e-6, msg=n)


def test_power_post_init_and_frozen_positions():
    """PyTorch default init (nn.Embedding N(0,1), nn.Linear U(+-1/sqrt(fan_in))) and fixed sinusoidal positions."""
    import math

    from grokinterp.models import is_trainable, sinusoidal_positions

    spec = model_spec("power-2l-post")
    w = init_params("power-2l-post", 122, 120, 4, seed=0)
    assert "ln_final.w" not in w and "ln_final.w" in init_params("power-2l", 122, 120, 4, seed=0)
    assert abs(w["embed.W_E"].std().item() - 1) < 0.02
    for name, fan_in in [("blocks.0.attn.W_Q", 128), ("blocks.1.mlp.W_in", 128), ("blocks.1.mlp.W_out", 512), ("unembed.W_U", 128)]:
        bound = 1 / math.sqrt(fan_in)
        assert w[name].abs().max() <= bound and abs(w[name].std().item() - bound / math.sqrt(3)) < 0.05 * bound, name
    pe = w["pos_embed.W_pos"]
    assert torch.equal(pe, sinusoidal_positions(4, 128))
    torch.testing.assert_close(pe[1, :2], torch.tensor([math.sin(1), math.cos(1)]))
    torch.testing.assert_close(pe[3, 2:4], torch.tensor([math.sin(3 / 10000 ** (2 / 128)), math.cos(3 / 10000 ** (2 / 128))]))
    assert not is_trainable("pos_embed.W_pos", spec) and is_trainable("pos_embed.W_pos", model_spec("power-2l"))
    hooked = dict(build_model("power-2l-post", 122, 120, 4, seed=0).named_parameters())
    assert not hooked["pos_embed.W_pos"].requires_grad and hooked["blocks.0.attn.W_Q"].requires_grad


def test_adamw_matches_torch():
    torch.manual_seed(0)
    w = torch.randn(5, 7)
    ref = w.clone().requires_grad_(True)
    ours = {"w": w.clone()[None].requires_grad_(True)}
    topt = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.5, betas=(0.9, 0.98))
    oopt = AdamW(ours, torch.tensor([1e-2]), torch.tensor([0.5]), betas=(0.9, 0.98))
    for _ in range(20):
        g = torch.randn(5, 7)
        ref.grad, ours["w"].grad = g.clone(), g.clone()[None]
        topt.step()
        oopt.step()
    torch.testing.assert_close(ours["w"][0].detach(), ref.detach(), rtol=1e-5, atol=1e-6)


def test_stablemax_is_a_distribution():
    from grokinterp.engine import stablemax_log_probs

    x = torch.randn(4, 9, dtype=torch.float64) * 5
    p = stablemax_log_probs(x).exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(4, dtype=torch.float64))
    assert (p.argmax(-1) == x.argmax(-1)).all()


def test_adamw_decay_to_init_without_gradients():
    """With zero gradients AdamW only decays: toward zero by default, toward the target with decay_to."""
    p0 = torch.randn(2, 5, 3)
    target = torch.randn(2, 5, 3)
    params = {"W": p0.clone().requires_grad_(True)}
    opt = AdamW(params, torch.tensor([0.1, 0.1]), torch.tensor([1.0, 1.0]), decay_to={"W": target}, decay_to_on=torch.tensor([True, False]))
    for _ in range(300):
        params["W"].grad = torch.zeros_like(p0)
        opt.step()
    torch.testing.assert_close(params["W"][0].detach(), target[0], rtol=1e-5, atol=1e-5)
    assert params["W"][1].abs().max() < 1e-6


def test_perpendicular_gradient_is_orthogonal_to_the_weights():
    """Prieto et al.: the gradient AdamW sees has no component along w (per model, per tensor) and keeps |g|."""
    torch.manual_seed(0)
    w = torch.randn(2, 4, 6, 3)  # (E, H, d_model, d_head), like W_Q
    g = torch.randn_like(w)
    params = {"W": w.clone().requires_grad_(True)}
    opt = AdamW(params, torch.tensor([1e-3, 1e-3]), torch.tensor([0.0, 0.0]), perpendicular=torch.tensor([True, False]))
    params["W"].grad = g.clone()
    opt.step()
    used = opt.state["m.W"] / (1 - opt.betas[0])
    assert abs((used[0] * w[0]).sum()) < 1e-4 * used[0].norm() * w[0].norm()
    torch.testing.assert_close(used[0].norm(), g[0].norm())
    torch.testing.assert_close(used[1], g[1])
