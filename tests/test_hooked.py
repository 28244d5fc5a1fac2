"""The hooked post-LN model (power-2l-post): same arithmetic as the engine, TransformerLens hooks."""

from pathlib import Path

import pytest
import torch

import grokinterp as gi
from grokinterp.analysis.batched import logits_and_neurons
from grokinterp.engine import forward
from grokinterp.models import build_model, init_params, model_spec

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_post_ln_model_matches_the_engine(device):
    """Random weights with non-trivial biases and LayerNorm parameters: logits and the last MLP layer agree."""
    torch.manual_seed(0)
    V, T, spec = 20, 4, model_spec("power-2l-post")
    weights = {n: w + torch.randn_like(w) * 0.1 for n, w in init_params("power-2l-post", V, V - 2, T, seed=1).items()}
    model = build_model("power-2l-post", V, V - 2, T, seed=1, device=device)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(weights[n])
    tokens = torch.randint(0, V, (64, T))
    logits, cache = model.run_with_cache(tokens.to(device))
    engine_cache: dict = {}
    expected = forward({n: w[None].to(device) for n, w in weights.items()}, tokens[None].to(device), spec, engine_cache)[0]
    assert logits.shape == (64, T, V - 2) and logits.device.type == device
    torch.testing.assert_close(logits[:, -1], expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cache["blocks.1.mlp.hook_post"][:, -1], engine_cache["mlp_post"][0], rtol=1e-4, atol=1e-4)
    # the stream between blocks is LayerNorm's output: zero mean over d_model, unit scale times ln2.w
    resid = cache["blocks.0.hook_resid_post"]
    torch.testing.assert_close(resid, cache["blocks.0.ln2.hook_normalized"] * weights["blocks.0.ln2.w"].to(device)
                               + weights["blocks.0.ln2.b"].to(device))
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"], resid)


def test_post_ln_model_has_hooked_transformer_hook_names():
    post = set(build_model("power-2l-post", 22, 20, 4, seed=0).to("cpu", print_details=False).hook_dict)
    pre = set(build_model("power-2l", 22, 20, 4, seed=0).hook_dict)
    optional = {"hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input", "hook_mlp_in"}  # off by default in TL
    expected = {h for h in pre if not h.startswith("ln_final.") and h.rsplit(".", 1)[-1] not in optional}
    assert post == expected
    assert {"hook_embed", "blocks.1.attn.hook_pattern", "blocks.0.ln1.hook_scale", "blocks.1.hook_resid_mid"} <= post


@pytest.fixture(scope="module")
def s5_post():
    run = gi.load_run(SHIPPED / "s5-post")
    return run, run.model()


def test_shipped_s5_post_model_is_its_checkpoint_and_matches_the_engine(s5_post):
    run, model = s5_post
    step = run.steps[-1]
    weights = run.weights(step)
    params = dict(model.named_parameters())
    assert set(params) == set(weights)
    for n, p in params.items():
        assert torch.equal(p.detach(), weights[n]), n
    inputs = run.task.all_inputs()[::7]  # 2,058 of the 14,400 equations
    logits, cache = model.run_with_cache(inputs)
    expected, mlp = logits_and_neurons(run.stacked_weights([step]), run.task, model_spec(run.config.model), inputs)
    torch.testing.assert_close(logits[:, -1], expected[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cache["blocks.1.mlp.hook_post"][:, -1], mlp[0], rtol=1e-4, atol=1e-4)
    labels = run.task.all_labels()[::7]
    assert (logits[:, -1].argmax(-1) == labels).float().mean() > 0.99  # the shipped run has grokked


def test_hook_ablation_changes_the_output(s5_post):
    run, model = s5_post
    inputs, labels = run.task.all_inputs()[::7], run.task.all_labels()[::7]
    clean = model(inputs)[:, -1]

    def mean_ablate(act, hook):
        return torch.zeros_like(act) + act.mean(0, keepdim=True)

    ablated = model.run_with_hooks(inputs, fwd_hooks=[("blocks.1.mlp.hook_post", mean_ablate)])[:, -1]
    same = model.run_with_hooks(inputs, fwd_hooks=[("blocks.1.mlp.hook_post", lambda act, hook: act)])[:, -1]
    torch.testing.assert_close(same, clean)
    assert (ablated.argmax(-1) == labels).float().mean() < 0.1  # the last MLP layer carries the answer
    assert not model.hook_dict["blocks.1.mlp.hook_post"].fwd_hooks  # run_with_hooks removed its hooks
