"""Kiln: PyTorch-style tensors, autograd and a tracing JIT compiler (MLIR -> LLVM).

    >>> import kiln
    >>> x = kiln.tensor([2.0, 3.0]); y = kiln.tensor([4.0, 1.0])
    >>> print(x + y)
    tensor([6., 4.])
"""
from kiln import cuda  # noqa: F401
from kiln.frontend import methods as _methods  # noqa: F401  (binds Tensor operators)
from kiln.frontend.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from kiln.frontend.composite import (bmm, chunk, cross_entropy, einsum, flip, gelu,
                                     layer_norm, linspace, log_softmax, meshgrid, mse_loss,
                                     one_hot, outer, repeat_interleave, roll, silu, softmax,
                                     split, tril, triu)
from kiln.frontend.creation import (arange, bernoulli, from_numpy, full, full_like,
                                    get_rng_state, initial_seed, manual_seed, multinomial,
                                    normal, ones, ones_like, rand, rand_like, randint,
                                    randint_like, randn, randn_like, randperm, seed,
                                    set_rng_state, tensor, zeros, zeros_like)
from kiln.frontend.torch_rng import default_generator
from kiln.frontend.functional import (abs, add, as_tensor, bitwise_and, bitwise_not,
                                      bitwise_or, bitwise_xor, cast, cat, clamp, clamp_max,
                                      clamp_min, cos, div, eq, erf, exp, expand, expm1, flatten,
                                      floor_divide, ge, gt, le, log, log1p, logical_and,
                                      logical_not, logical_or, logical_xor, lt, matmul, maximum,
                                      floor, ceil, trunc, round, frac,
                                      minimum, mul, ne, neg, permute, pow, relu, remainder,
                                      reshape, rsqrt, sigmoid, sin, sqrt, squeeze, stack, sub,
                                      tanh, transpose, unsqueeze, where)
from kiln.frontend.common_ops import (allclose, diag, dot, equal, eye, isclose, isfinite, isinf,
                                     isnan, mm, sign, square, unbind)
from kiln.frontend.explain import explain
from kiln.frontend.methods import _masked_fill as masked_fill
from kiln.frontend.indexing import (argwhere, gather, index_add, index_put, index_select,
                                    masked_select, nonzero, scatter, scatter_add, take,
                                    take_along_dim, unique)
from kiln.frontend.compile_api import compile
from kiln.frontend.jit import KilnJitWarning, compile_stages, jit
from kiln.frontend.reductions import (all, amax, amin, any, argmax, argmin, argsort, cumprod,
                                      cumsum, logsumexp, max, mean, min, norm, prod, sort, std,
                                      std_mean, sum, topk, var, var_mean)
from kiln.frontend.tensor import Size, Tensor, device
from kiln.ir.dtypes import DType as dtype
from kiln.ir.dtypes import bool_ as bool
from kiln.ir.dtypes import float32, float64, int32, int64
from kiln.ir.errors import KilnError, NotSupportedError, ShapeError
from kiln.runtime.allocator import empty_cache, memory_stats
from kiln import autograd, nn, optim, viz  # noqa: E402,F401
import kiln.utils.data  # noqa: E402,F401  (kiln.utils.data as an attribute, like torch)
from kiln.serialization import SerializationError, load, save  # noqa: E402
from kiln.utils.data.generator import Generator  # noqa: E402

float = float32
double = float64
long = int64
int = int32
concat = cat
clip = clamp

__version__ = "0.1.0"

# NOTE: submodules a program uses only in its tests or at a prompt, imported on first use so
# `import kiln` does not pay for them
_LAZY_SUBMODULES = ("testing", "profiler", "distributed")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib
        return importlib.import_module(f"kiln.{name}")
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
__all__ = [n for n in dir() if not n.startswith("_")]
