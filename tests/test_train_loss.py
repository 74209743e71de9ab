"""Label-smoothed cross entropy against a direct per-token formula (docs/METHOD.md §3.1)."""

import math

import pytest
import torch

from hat_cli.training.loss import label_smoothed_nll_loss, to_base2_per_token


def _reference(logits, target, eps, pad):
    total, nll_total = 0.0, 0.0
    V = logits.size(-1)
    for row, t in zip(logits.reshape(-1, V).double(), target.reshape(-1).tolist()):
        if t == pad:
            continue
        logp = row - torch.logsumexp(row, 0)
        nll = -logp[t].item()
        total += (1 - eps) * nll + eps / V * (-logp.sum().item())
        nll_total += nll
    return total, nll_total


def test_label_smoothed_loss_matches_reference_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 3
    target = torch.randint(2, 11, (3, 5), generator=g)
    target[0, 3:] = 1  # padding
    target[2, 4] = 1
    loss, nll = label_smoothed_nll_loss(logits, target, 0.1, padding_idx=1)
    ref_loss, ref_nll = _reference(logits, target, 0.1, 1)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    assert nll.item() == pytest.approx(ref_nll, rel=1e-5)


def test_loss_agrees_with_torch_cross_entropy_label_smoothing_and_has_gradients():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 7, 23, generator=g, requires_grad=True)
    target = torch.randint(0, 23, (4, 7), generator=g)
    target[1, 5:] = 1
    loss, _ = label_smoothed_nll_loss(logits, target, 0.1, padding_idx=1)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 23), target.reshape(-1), ignore_index=1,
                                            reduction="sum", label_smoothing=0.1)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    loss.backward()
    # padded positions get no gradient
    assert torch.count_nonzero(logits.grad[1, 5:]) == 0
    assert torch.count_nonzero(logits.grad[0]) > 0


def test_zero_smoothing_is_plain_nll_and_base2_logging():
    logits = torch.tensor([[[0.0, 0.0, math.log(2.0), 0.0]]])
    target = torch.tensor([[2]])
    loss, nll = label_smoothed_nll_loss(logits, target, 0.0, padding_idx=1)
    assert loss.item() == pytest.approx(nll.item())
    assert nll.item() == pytest.approx(-math.log(2.0 / 5.0), rel=1e-6)
    assert to_base2_per_token(nll.item(), 1) == pytest.approx(-math.log2(2.0 / 5.0), rel=1e-6)


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_the_loss_written_for_the_compiler_gives_the_same_numbers_and_gradients(compiled):
    """`compiled_loss: true` (GPU only in training) computes the loss without fp32 log-probabilities; here the
    same expression, eager and through torch.compile, against the eager loss training uses by default, on bf16
    logits as autocast hands them over, with padding."""
    from hat_cli.training.loss import training_losses

    g = torch.Generator().manual_seed(2)
    fn = training_losses(compiled)[0]
    for shape in ((3, 13), (4, 16)):  # two batch shapes, [batch, time, V] as training passes them
        logits = (torch.randn(*shape, 301, generator=g) * 4).to(torch.bfloat16).requires_grad_()
        target = torch.randint(0, 301, shape, generator=g)
        target[0, :5] = 1
        ref_loss, ref_nll = label_smoothed_nll_loss(logits, target, 0.1, padding_idx=1)
        ref_grad, = torch.autograd.grad(ref_loss, logits)
        loss, nll = fn(logits, target, 0.1, 1)
        grad, = torch.autograd.grad(loss, logits)
        assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
        assert nll.item() == pytest.approx(ref_nll.item(), rel=1e-5)
        assert grad.dtype == ref_grad.dtype == torch.bfloat16
        assert torch.allclose(grad.float(), ref_grad.float(), rtol=1e-2, atol=1e-4)  # bf16 rounding of the same values
        assert not grad[0, :5].any()  # padding gets no gradient
    if compiled:
        assert fn.failure is None  # compiled indeed, not the fallback


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_distillation_from_logits_gives_the_same_numbers_and_gradients(compiled):
    """With the compiled losses the sandwich rule's distillation reads the teacher's bf16 logits instead of fp32
    probabilities: the same cross entropy and the same student gradients, padding excluded."""
    from hat_cli.training.loss import training_losses

    g = torch.Generator().manual_seed(3)
    fn = training_losses(compiled)[1]
    for shape in ((3, 9), (5, 10)):
        student = (torch.randn(*shape, 211, generator=g) * 3).to(torch.bfloat16).requires_grad_()
        teacher = (torch.randn(*shape, 211, generator=g) * 3).to(torch.bfloat16)
        target = torch.randint(0, 211, shape, generator=g)
        target[-1, -4:] = 1
        # the eager reference: fp32 log-probabilities of the student against the teacher's probabilities
        keep = target.ne(1)
        per_token = -(torch.softmax(teacher.float(), -1) * torch.log_softmax(student.float(), -1)).sum(-1)
        ref = per_token.masked_fill(~keep, 0.0).sum()
        ref_grad, = torch.autograd.grad(ref, student)
        kd = fn(student, teacher, target, 1)
        grad, = torch.autograd.grad(kd, student)
        assert kd.item() == pytest.approx(ref.item(), rel=1e-5)
        assert grad.dtype == torch.bfloat16
        assert torch.allclose(grad.float(), ref_grad.float(), rtol=1e-2, atol=1e-4)
        assert not grad[-1, -4:].any()
    if compiled:
        assert fn.failure is None


@pytest.mark.slow
def test_a_failing_compiler_falls_back_to_the_same_loss_and_says_so():
    """A machine whose C compiler is missing (here: one that does not exist) still gets the loss, from the plain
    function, and a sentence for the run's warnings; later calls do not try to compile again."""
    import torch._dynamo
    import torch._inductor.config as inductor_config

    from hat_cli.core.compiled import CompiledOrEager
    from hat_cli.training.loss import smoothed_loss_from_logits

    torch._dynamo.reset()
    logits = torch.randn(9, 13, requires_grad=True)
    target = torch.randint(0, 13, (9,))
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False}):
        loss = CompiledOrEager(smoothed_loss_from_logits, "the loss", "compiled_loss")
        assert loss.warning() is None
        first, _ = loss(logits, target, 0.1, 1)
        assert loss.failure and "compiler" in loss.failure.lower()
        second, _ = loss(logits, target, 0.1, 1)
    expected, _ = label_smoothed_nll_loss(logits, target, 0.1, 1)
    assert first.item() == second.item() == pytest.approx(expected.item(), rel=1e-6)
    first.backward()  # gradients flow through the fallback
    assert logits.grad is not None
    assert "compiled_loss: false" in loss.warning()
    torch._dynamo.reset()


@pytest.mark.slow
def test_a_callers_error_is_raised_not_taken_for_a_compiler_failure():
    from hat_cli.core.compiled import CompiledOrEager
    from hat_cli.training.loss import smoothed_loss_from_logits

    loss = CompiledOrEager(smoothed_loss_from_logits, "the loss", "compiled_loss")
    with pytest.raises(RuntimeError):
        loss(torch.randn(5, 7), torch.randint(0, 7, (6,)), 0.1, 1)  # 6 targets for 5 rows
    assert loss.failure is None  # still compiling for the next, correct call
    value, _ = loss(torch.randn(5, 7), torch.randint(0, 7, (5,)), 0.1, 1)
    assert torch.isfinite(value) and loss.failure is None
