"""A function run through ``torch.compile`` where that works, and as written where it does not.

Training and the search compile a few small element-wise functions (the loss, the residual step before each
LayerNorm) so that the GPU runs each as one or two fused kernels. A machine without a C compiler or Triton
must still train and score as before, only slower: the first compiler failure switches that function back
to the plain version for the rest of the process, and ``warning()`` gives the sentence for the run's log.
"""

from __future__ import annotations

_COMPILED: dict = {}  # (function, what, switch) -> CompiledOrEager, one per process


def _compiler_failures() -> tuple[type[BaseException], ...]:
    """What a broken or missing compiler raises (no C compiler, no Triton, a GPU too old for Triton): inductor
    wraps its errors in BackendCompilerFailed (InductorError); the rest name the missing tool."""
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor import exc

    names = ("CppCompileError", "InvalidCxxCompiler", "TritonMissing", "GPUTooOldForTriton")
    return (BackendCompilerFailed, *(getattr(exc, name) for name in names if hasattr(exc, name)))


class CompiledOrEager:
    """``function`` through ``torch.compile`` (dynamic shapes: one compilation serves every batch shape), or the
    plain function from the first time compiling fails. ``what`` names it and ``switch`` the option that turns it
    off, for the warning; ``failure`` says what went wrong."""

    def __init__(self, function, what: str, switch: str):
        import torch

        self.function = function
        self.what, self.switch = what, switch
        self.compiled = torch.compile(function, dynamic=True)
        self.failure: str | None = None
        # Floats are not dynamic: one compilation per dropout rate (a rate per width, and eval), times a few special
        # sizes (a batch of one). torch's default limit of 8 per function would then quietly run the rest
        # uncompiled. (The limit is the process's; nothing else here compiles.)
        import torch._dynamo.config as dynamo_config

        name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))

    def __call__(self, *args):
        if self.failure is None:
            try:
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


def compiled(function, what: str, switch: str) -> CompiledOrEager:
    """One :class:`CompiledOrEager` per process and function (module-level functions only: the registry keeps
    them): its compilations serve every later call."""
    key = (function, what, switch)
    if key not in _COMPILED:
        _COMPILED[key] = CompiledOrEager(function, what, switch)
    return _COMPILED[key]


def compile_warnings() -> list[str]:
    """The sentences for a run's warnings: one for each thing whose compilation has failed in this process
    (it stays uncompiled for the rest of the process, so an earlier failure concerns this run too)."""
    return list(dict.fromkeys(f.warning() for f in _COMPILED.values() if f.failure))
