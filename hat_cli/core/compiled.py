"""A function run through ``torch.compile`` where that works, and as written where it does not.

Training and the search compile a few small element-wise functions (the loss, the residual step before each
LayerNorm) so that the GPU runs each as one or two fused kernels. A machine without a C compiler or Triton
must still train and score as before, only slower: the first compiler failure switches that function back
to the plain version for the rest of the process, and ``warning()`` gives the sentence for the run's log.
"""

from __future__ import annotations

_COMPILED: dict = {}  # (function, what, switch, static_widths) -> CompiledOrEager, one per process


def _compiler_failures() -> tuple[type[BaseException], ...]:
    """What a broken or missing compiler raises (no C compiler, no Triton, a GPU too old for Triton): inductor
    wraps its errors in BackendCompilerFailed (InductorError); the rest name the missing tool."""
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor import exc

    names = ("CppCompileError", "InvalidCxxCompiler", "TritonMissing", "GPUTooOldForTriton")
    return (BackendCompilerFailed, *(getattr(exc, name) for name in names if hasattr(exc, name)))


def _mark_batch_and_time_dynamic(args: tuple) -> None:
    """Callers pass [batch, time, ...] tensors (logits [B, T, V], activations [B, T, C] or [T, B, C], targets
    [B, T]): their first two dimensions vary from call to call and are marked dynamic; the rest (model width,
    vocabulary) stay static. A 2-D activation [N, C] gets C marked too, but its weight [C] pins it again."""
    import torch._dynamo

    for arg in args:
        if hasattr(arg, "dim") and arg.dim() >= 2:
            torch._dynamo.maybe_mark_dynamic(arg, 0)
            torch._dynamo.maybe_mark_dynamic(arg, 1)


class CompiledOrEager:
    """``function`` through ``torch.compile``, or the plain function from the first time compiling fails. ``what``
    names it and ``switch`` the option that turns it off, for the warning; ``failure`` says what went wrong.

    Two ways to compile (``static_widths``): every dimension dynamic, so that one compilation serves every shape;
    or batch and time dynamic and the widths static, one compilation per width, which lets the compiler size
    its blocks for the reductions over the width and the vocabulary. The second pays where few widths repeat
    many times (the search's scorer: 13-16% less GPU time per candidate on an H100, bench/RESULTS.md); training,
    where every update may bring another width, compiles for all shapes (compiled norms, either way, were no
    faster than eager ones there)."""

    def __init__(self, function, what: str, switch: str, static_widths: bool = False):
        import torch

        self.function = function
        self.what, self.switch = what, switch
        self.static_widths = static_widths
        self.compiled = torch.compile(function, dynamic=not static_widths)
        self.failure: str | None = None
        # Floats are not dynamic: one compilation per dropout rate (a rate per width, and eval), times a few special
        # sizes (a batch of one), and with static widths once per width. torch's default limit of 8 per function
        # would then quietly run the rest uncompiled. (The limit is the process's; nothing else here compiles.)
        import torch._dynamo.config as dynamo_config

        name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))

    def __call__(self, *args):
        if self.failure is None:
            try:
                if self.static_widths:
                    _mark_batch_and_time_dynamic(args)
                return self.compiled(*args)
            except _compiler_failures() as exc:  # only the compiler's own failures: a caller's error is raised
                first_line = (str(exc).strip().splitlines() or [""])[0][:300]
                self.failure = f"{type(exc).__name__}: {first_line}"
        return self.function(*args)

    def warning(self) -> str | None:
        if self.failure is None:
            return None
        return (f"compiling {self.what} failed ({self.failure}); it was computed without compiling, which is slower "
                f"on GPUs (what training's '{self.switch}: false' does on purpose).")


def compiled(function, what: str, switch: str, static_widths: bool = False) -> CompiledOrEager:
    """One :class:`CompiledOrEager` per process, function and way of compiling (module-level functions only: the
    registry keeps them): its compilations serve every later call."""
    key = (function, what, switch, static_widths)
    if key not in _COMPILED:
        _COMPILED[key] = CompiledOrEager(function, what, switch, static_widths)
    return _COMPILED[key]


def compile_warnings() -> list[str]:
    """The sentences for a run's warnings: one for each thing whose compilation has failed in this process
    (it stays uncompiled for the rest of the process, so an earlier failure concerns this run too)."""
    return list(dict.fromkeys(f.warning() for f in _COMPILED.values() if f.failure))
