"""`kiln.testing`: end-to-end compile tests for your own models.

- `assert_close(actual, expected)`: PyTorch's per-dtype tolerances; the message names the
  worst element, its index and both values.
- `gradcheck(fn, inputs)` / `gradgradcheck`: autograd against float64 finite differences.
- `assert_matches_eager(fn, *args)`: `@kiln.jit` gives the eager outputs, writes and
  gradients.
- `assert_compiles(fn, *args, graphs=1, breaks=0)`: one graph, no breaks (else the reasons
  and their source lines).
- `no_recompiles()`: no jitted function traces again inside the block.
- `check_ir(fn, *args, stage="fusion", golden=PATH)`: a stage's IR against a golden file or
  FileCheck patterns (`KILN_UPDATE_GOLDEN=1` rewrites golden files); `filecheck(text,
  patterns)` on any text.

    >>> import kiln
    >>> from kiln.testing import assert_compiles, assert_matches_eager, no_recompiles
    >>> def f(x, w):
    ...     return kiln.tanh(x @ w).sum()
    >>> x, w = kiln.randn(4, 3), kiln.randn(3, 2, requires_grad=True)
    >>> _ = assert_compiles(f, x, w)
    >>> assert_matches_eager(f, x, w)
    >>> jf = kiln.jit(f)
    >>> with no_recompiles():
    ...     for _ in range(3):
    ...         _ = jf(x, w)
"""
from .close import assert_close
from .compiles import assert_compiles
from .eager import assert_matches_eager
from .filecheck import FileCheckError, assert_filecheck, filecheck
from .golden import check_ir, strip_locs
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .recompiles import RecompileError, no_recompiles

__all__ = ["FileCheckError", "GradcheckError", "RecompileError", "assert_close",
           "assert_compiles", "assert_filecheck", "assert_matches_eager", "check_ir",
           "filecheck", "gradcheck", "gradgradcheck", "no_recompiles", "strip_locs"]
