"""Two shortcuts the model takes when no gradients are needed (the search's scoring, decoding, latency): the
encoder keys cast once for all decoder layers under autocast, and on GPUs the feed-forward ReLU applied in the
matmul's epilogue. Both must give what the forward pass with gradients gives."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from hat_cli.core.compiled import CompiledOrEager, compile_warnings
from hat_cli.model.space import SearchSpace
from hat_cli.model.transformer import LayerNorm, TransformerModel, _compiled_residual_norm_and_cast, _linear, _linear_relu_no_grad

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the matmul epilogue runs there)")


def _model_and_batch(device: str):
    space = SearchSpace.builtin("space0")
    torch.manual_seed(0)
    model = TransformerModel.supertransformer(space.shape, 400, 400, True).eval().to(device)
    g = torch.Generator().manual_seed(1)
    src, prev = (torch.randint(4, 400, (3, n), generator=g).to(device) for n in (9, 7))
    src[0, :3] = 1  # left padding, so the encoder-attention mask is exercised
    return space, model, src, prev


def test_no_grad_forward_under_autocast_equals_the_forward_with_gradients():
    """space0, six sampled SubTransformers attending to 1-3 encoder layers, bf16 autocast on the CPU: the same
    logits to the last bit, and the keys the decoder layers read are bf16 only where no gradient flows."""
    space, model, src, prev = _model_and_batch("cpu")
    attended = set()
    for seed in range(6):
        config = space.sample(random.Random(seed))
        attended.update(config.encoder_layers_attended(i) for i in range(config.decoder_layer_num))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with torch.no_grad():
                fast = model(src, prev, config)
                keys = model.encode(src, config).memory(config.encoder_layers_attended(0)).keys
            with_gradients = model(src, prev, config)
            keys_with_gradients = model.encode(src, config).memory(config.encoder_layers_attended(0)).keys
        assert torch.equal(fast, with_gradients.detach())
        assert keys.dtype == torch.bfloat16 and keys_with_gradients.dtype == torch.float32
    assert attended == {1, 2, 3}
    with torch.no_grad():  # without autocast nothing is cast
        config = space.sample(random.Random(0))
        assert model.encode(src, config).memory(1).keys.dtype == torch.float32


DEVICES = ["cpu", pytest.param("cuda", marks=GPU)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("static_widths", [False, True])
def test_norms_that_also_write_the_matmul_input_score_the_same(device, static_widths, monkeypatch):
    """The scorer's compiled residual norms, without gradients under bf16 autocast, also write their output in bf16
    for the next matmul: the logits of sampled space0 SubTransformers are those of the norms that leave the cast to
    autocast, to the last bit; with gradients (training) the norms keep handing over one fp32 tensor."""
    space, model, src, prev = _model_and_batch(device)
    model.compiled_norms, model.static_widths = True, static_widths
    configs = [space.sample(random.Random(seed)) for seed in (0, 1)]
    norm = model.decoder.layers[0].encoder_attn_layer_norm
    drop = model._dropouts(512, 640)
    x, h = torch.randn(2, 5, 512, device=device), torch.randn(2, 5, 512, device=device).to(torch.bfloat16)
    fused_norm, run_compiled, calls = _compiled_residual_norm_and_cast(static_widths), CompiledOrEager.__call__, []

    def counted(self, *args):
        calls.extend([1] if self is fused_norm else [])
        return run_compiled(self, *args)

    monkeypatch.setattr(CompiledOrEager, "__call__", counted)
    with torch.autocast(device, dtype=torch.bfloat16):
        with torch.no_grad():
            fused = [model(src, prev, config) for config in configs]
            # every layer's inner norms hand over the copy: one per encoder layer, two per decoder layer
            assert len(calls) == sum(c.encoder_layer_num + 2 * c.decoder_layer_num for c in configs)
            out, for_matmul = norm.after_residual_for_matmul(x, h, 0.0, drop, 512)
        assert out.dtype == torch.float32 and for_matmul.dtype == torch.bfloat16
        assert torch.equal(for_matmul, out.to(torch.bfloat16))
        out, for_matmul = norm.after_residual_for_matmul(x, h, 0.0, drop, 512)  # gradients on: one tensor
        assert for_matmul is out and out.dtype == torch.float32
        with torch.no_grad():
            monkeypatch.setattr(LayerNorm, "after_residual_for_matmul",
                                lambda self, x, h, p, drop, dim: (self.after_residual(x, h, p, drop, dim),) * 2)
            separate = [model(src, prev, config) for config in configs]
    for a, b in zip(fused, separate):
        assert torch.equal(a, b)
    assert _compiled_residual_norm_and_cast(static_widths).failure is None and not compile_warnings()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_the_relu_matmul_computes_relu_of_the_sliced_linear(device, dtype):
    """The one-kernel feed-forward step (what GPUs run without gradients; on the CPU the same function without the
    epilogue): relu of the leading slice of the weight and bias, random bias, with and without autocast, for
    [batch, time, width] inputs, a single row, 2-D and 4-D inputs and a non-contiguous one."""
    if device == "cpu" and dtype == torch.float16:
        pytest.skip("float16 matmuls are a GPU case")
    g = torch.Generator().manual_seed(4)
    weight = torch.randn(96, 40, generator=g).to(device, dtype)
    bias = (torch.randn(96, generator=g) * 3).to(device, dtype)
    inputs = [torch.randn(3, 5, 32, generator=g), torch.randn(1, 32, generator=g), torch.randn(7, 32, generator=g),
              torch.randn(2, 3, 4, 32, generator=g), torch.randn(3, 32, 5, generator=g).transpose(1, 2)]
    exact = dtype in (torch.float32, torch.float64)
    tolerance = dict(rtol=1e-5, atol=1e-5) if exact else dict(rtol=1e-2, atol=2e-2)
    with torch.no_grad():
        for x in (t.to(device) for t in inputs):
            expected = F.relu(_linear(x.to(dtype), weight, bias, 64, 32))
            got = _linear_relu_no_grad(x.to(dtype), weight, bias, 64, 32)
            assert got.shape == (*x.shape[:-1], 64) and got.dtype == dtype
            torch.testing.assert_close(got, expected, **tolerance)
        x = inputs[0].to(device)
        assert (got == 0).any() and (got > 0).any()
        autocast_to = torch.bfloat16
        with torch.autocast(device, dtype=autocast_to):  # fp32 activations, as the residual stream hands them
            if dtype == torch.float64:  # autocast leaves float64 weights alone: fp32 activations meet them, as in F.linear
                with pytest.raises(RuntimeError):
                    F.relu(_linear(x, weight, bias, 64, 32))
                with pytest.raises(RuntimeError):
                    _linear_relu_no_grad(x, weight, bias, 64, 32)
                return
            autocast_expected = F.relu(_linear(x, weight, bias, 64, 32))
            autocast_got = _linear_relu_no_grad(x, weight, bias, 64, 32)
        assert autocast_got.dtype == autocast_expected.dtype == autocast_to
        torch.testing.assert_close(autocast_got, autocast_expected, rtol=1e-2, atol=2e-2)
        if dtype != torch.float32:  # without autocast, mixed dtypes are an error, as in F.linear
            with pytest.raises(RuntimeError):
                _linear_relu_no_grad(x, weight, bias, 64, 32)


@GPU
def test_on_a_gpu_the_no_grad_forward_matches_the_forward_with_gradients():
    """What the search's scorer runs on a GPU (bf16 weights, autocast, no gradients: the ReLU epilogue and the
    keys cast once) against the same forward with gradients enabled, within bf16 rounding."""
    space, model, src, prev = _model_and_batch("cuda")
    with torch.no_grad():  # biases start at zero; random ones show that the epilogue adds the right slice
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.5)
    model = model.to(torch.bfloat16)
    for seed in range(4):
        config = space.sample(random.Random(seed))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            with torch.no_grad():
                fast = model(src, prev, config).float()
            reference = model(src, prev, config).detach().float()
        # bf16 logits: the two forwards may take matmul kernels that add in another order
        torch.testing.assert_close(fast, reference, rtol=2e-2, atol=5e-2)
