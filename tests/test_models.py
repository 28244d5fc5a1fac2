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
