"""Recurrent layers: `RNN` (tanh or relu), `LSTM` (with proj_size) and `GRU`, and their
single-step cells, with PyTorch's parameter names, shapes, gate order and initialization.

Each layer precomputes the input projection of the whole sequence in one matmul, then steps
through time in Python: under @kiln.jit the loop unrolls into one graph.

Gate order, as PyTorch: LSTM rows of weight_ih / weight_hh are (i, f, g, o); GRU rows are
(r, z, n) with n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).

    >>> import kiln
    >>> lstm = LSTM(input_size=3, hidden_size=4, num_layers=2, batch_first=True)
    >>> output, (h_n, c_n) = lstm(kiln.randn(5, 7, 3))
    >>> output.shape, h_n.shape, c_n.shape
    (kiln.Size([5, 7, 4]), kiln.Size([2, 5, 4]), kiln.Size([2, 5, 4]))
"""
from __future__ import annotations

import math
import numbers
import warnings

from kiln.frontend import functional as K
from kiln.frontend.creation import zeros
from kiln.ir.errors import DTypeError, NotSupportedError, ShapeError
from kiln.ir.types import user_loc

from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ---- one time step ---------------------------------------------------------------------------
def _gate(gates, k: int, size: int):
    """The k-th block of `size` features along the last dim (PyTorch's chunk order)."""
    return gates[..., k * size:(k + 1) * size]


def rnn_step(gi, h, w_hh, b_hh, nonlinearity: str):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), with gi = x W_ih^T + b_ih."""
    pre = gi + F.linear(h, w_hh, b_hh)
    return K.tanh(pre) if nonlinearity == "tanh" else K.relu(pre)


def lstm_step(gi, h, c, w_hh, b_hh, w_hr=None):
    """(h', c'): c' = f * c + i * g, h' = o * tanh(c') (projected by w_hr when given)."""
    gates = gi + F.linear(h, w_hh, b_hh)
    size = gates.shape[-1] // 4
    i, f = K.sigmoid(_gate(gates, 0, size)), K.sigmoid(_gate(gates, 1, size))
    g, o = K.tanh(_gate(gates, 2, size)), K.sigmoid(_gate(gates, 3, size))
    c = f * c + i * g
    h = o * K.tanh(c)
    return (h if w_hr is None else F.linear(h, w_hr)), c


def gru_step(gi, h, w_hh, b_hh):
    """h' = n + z * (h - n), with r and z sigmoids and n = tanh(gi_n + r * gh_n)."""
    gh = F.linear(h, w_hh, b_hh)
    size = gh.shape[-1] // 3
    r = K.sigmoid(_gate(gi, 0, size) + _gate(gh, 0, size))
    z = K.sigmoid(_gate(gi, 1, size) + _gate(gh, 1, size))
    n = K.tanh(_gate(gi, 2, size) + r * _gate(gh, 2, size))
    return n + z * (h - n)


def _step(mode: str, gi, state, params):
    """One step of any mode; state is h, or (h, c) for LSTM."""
    w_hh, b_hh, w_hr = params["w_hh"], params.get("b_hh"), params.get("w_hr")
    if mode == "LSTM":
        return lstm_step(gi, state[0], state[1], w_hh, b_hh, w_hr)
    if mode == "GRU":
        return gru_step(gi, state, w_hh, b_hh)
    return rnn_step(gi, state, w_hh, b_hh, "tanh" if mode == "RNN_TANH" else "relu")


def _run_direction(mode: str, x, state, params, reverse: bool):
    """One layer, one direction over x [L, N, I]: (outputs [L, N, H], last state)."""
    projected = F.linear(x, params["w_ih"], params.get("b_ih"))
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs = [None] * x.shape[0]
    for t in steps:
        state = _step(mode, projected[t], state, params)
        outputs[t] = state[0] if mode == "LSTM" else state
    return K.stack(outputs, 0), state


# ---- the multi-layer modules -----------------------------------------------------------------
def _check_sizes(hidden_size, num_layers, dropout, proj_size, mode: str):
    if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) \
            or not 0 <= dropout <= 1:
        raise ValueError("dropout should be a number in range [0, 1] representing the "
                         "probability of an element being zeroed")
    if dropout > 0 and num_layers == 1:
        warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so "
                      f"non-zero dropout expects num_layers greater than 1, but got "
                      f"dropout={dropout} and num_layers={num_layers}", stacklevel=4)
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable "
                         "projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")
    if proj_size and mode != "LSTM":
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


class RNNBase(Module):
    """Shared by RNN, LSTM and GRU: parameters weight_ih_l{k}[_reverse], weight_hh_l{k},
    bias_ih_l{k}, bias_hh_l{k} (and weight_hr_l{k} for a projected LSTM), registered in
    PyTorch's order, each drawn from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        _check_sizes(hidden_size, num_layers, dropout, proj_size, mode)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            for direction in range(self._directions):
                self._make_layer(layer, direction, device, dtype)
        self.reset_parameters()

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _output_size(self) -> int:
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def _make_layer(self, layer: int, direction: int, device, dtype):
        gate_size = _GATES[self.mode] * self.hidden_size
        in_size = self.input_size if layer == 0 else self._output_size * self._directions
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        shapes = [("weight_ih", (gate_size, in_size)),
                  ("weight_hh", (gate_size, self._output_size))]
        if self.bias:
            shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
        if self.proj_size > 0:
            shapes.append(("weight_hr", (self.proj_size, self.hidden_size)))
        for name, shape in shapes:
            setattr(self, name + suffix, Parameter(zeros(*shape, dtype=dtype, device=device)))
            self._flat_weights_names.append(name + suffix)

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """Nothing to do: PyTorch packs the weights for cuDNN here; Kiln keeps them as they
        are."""

    @property
    def all_weights(self) -> list:
        per_layer = len(self._flat_weights_names) // (self.num_layers * self._directions)
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i:i + per_layer]]
                for i in range(0, len(names), per_layer)]

    def _params(self, layer: int, direction: int) -> dict:
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        keys = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih",
                "b_hh": "bias_hh", "w_hr": "weight_hr"}
        return {k: getattr(self, n + suffix) for k, n in keys.items()
                if n + suffix in self._flat_weights_names}

    def _check_input(self, input) -> None:
        if type(input).__name__ == "PackedSequence" or hasattr(input, "batch_sizes"):
            raise NotSupportedError(f"not supported yet: packed sequences as input to "
                                    f"{type(self).__name__}", loc=user_loc(),
                                    hint="pass a padded tensor (and mask the padding)")
        if input.ndim not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                             f"{input.ndim}D tensor instead")
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype:
            raise DTypeError(f"RNN input dtype ({input.dtype}) does not match weight dtype "
                             f"({weight.dtype}). Convert input: input.to({weight.dtype}), or "
                             f"convert model: model.to({input.dtype})", loc=user_loc())
        if input.shape[-1] != self.input_size:
            raise ShapeError(f"{type(self).__name__}: input.size(-1) must be equal to "
                             f"input_size. Expected {self.input_size}, got "
                             f"{input.shape[-1]}", loc=user_loc())

    def _check_hidden(self, hx, batch: int, size: int, name: str):
        want = (self.num_layers * self._directions, batch, size)
        if tuple(hx.shape) != want:
            raise ShapeError(f"{type(self).__name__}: Expected {name} size {want}, got "
                             f"{list(hx.shape)}", loc=user_loc())

    def _initial_state(self, hx, x, batched: bool):
        """(h0, c0 or None), each [num_layers * directions, N, size]."""
        shape = (self.num_layers * self._directions, x.shape[1])
        if hx is None:
            h0 = zeros(*shape, self._output_size, dtype=x.dtype, device=x.device)
            c0 = zeros(*shape, self.hidden_size, dtype=x.dtype, device=x.device)
            return h0, (c0 if self.mode == "LSTM" else None)
        parts = self._split_hx(hx)
        want_ndim = 3 if batched else 2
        for part in parts:
            if part.ndim != want_ndim:
                kind = "3-D" if batched else "2-D"
                raise ShapeError(f"For {'batched 3' if batched else 'unbatched 2'}-D input, "
                                 f"hx should also be {kind} but got {part.ndim}-D tensor",
                                 loc=user_loc())
        if not batched:
            parts = [K.unsqueeze(p, 1) for p in parts]
        self._check_hidden(parts[0], x.shape[1], self._output_size, "hidden")
        if self.mode == "LSTM":
            self._check_hidden(parts[1], x.shape[1], self.hidden_size, "cell")
            return parts[0], parts[1]
        return parts[0], None

    def _split_hx(self, hx) -> list:
        if self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTM: hx must be a tuple (h_0, c_0) of tensors")
            return list(hx)
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"{type(self).__name__}: hx must be a tensor, got a "
                            f"{type(hx).__name__}")
        return [hx]

    def _run_layers(self, x, h0, c0):
        """All layers over x [L, N, I]: (output [L, N, D*H], h_n, c_n or None)."""
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self._directions):
                k = layer * self._directions + direction
                state = (h0[k], c0[k]) if self.mode == "LSTM" else h0[k]
                out, state = _run_direction(self.mode, x, state, self._params(layer, direction),
                                            reverse=direction == 1)
                outputs.append(out)
                h_n.append(state[0] if self.mode == "LSTM" else state)
                if self.mode == "LSTM":
                    c_n.append(state[1])
            x = outputs[0] if len(outputs) == 1 else K.cat(outputs, 2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        return x, K.stack(h_n, 0), (K.stack(c_n, 0) if c_n else None)

    def forward(self, input, hx=None):
        self._check_input(input)
        batched = input.ndim == 3
        x = input if batched else K.unsqueeze(input, 1)
        if batched and self.batch_first:
            x = K.transpose(x, 0, 1)
        h0, c0 = self._initial_state(hx, x, batched)
        out, h_n, c_n = self._run_layers(x, h0, c0)
        if not batched:
            out, h_n = K.squeeze(out, 1), K.squeeze(h_n, 1)
            c_n = None if c_n is None else K.squeeze(c_n, 1)
        elif self.batch_first:
            out = K.transpose(out, 0, 1)
        return out, ((h_n, c_n) if self.mode == "LSTM" else h_n)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu.

    forward(input, hx=None) -> (output, h_n): input (L, N, I) ((N, L, I) with batch_first,
    or unbatched (L, I)), hx and h_n (num_layers * directions, N, H).

    >>> RNN(3, 4, nonlinearity="relu", bidirectional=True)
    RNN(3, 4, bidirectional=True)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)


class LSTM(RNNBase):
    """Long short-term memory; gates (i, f, g, o) in that order in the weight rows.

    forward(input, (h_0, c_0)=None) -> (output, (h_n, c_n)); with proj_size > 0 the hidden
    state is projected to proj_size by weight_hr_l{k}.

    >>> LSTM(3, 4, num_layers=2, dropout=0.5)
    LSTM(3, 4, num_layers=2, dropout=0.5)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit; gates (r, z, n) in that order in the weight rows.

    >>> GRU(3, 4, bias=False, batch_first=True)
    GRU(3, 4, bias=False, batch_first=True)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)


# ---- cells -----------------------------------------------------------------------------------
class RNNCellBase(Module):
    """One time step: weight_ih [G*H, I], weight_hh [G*H, H], bias_ih, bias_hh [G*H]."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gates = num_chunks * hidden_size
        self.weight_ih = Parameter(zeros(gates, input_size, dtype=dtype, device=device))
        self.weight_hh = Parameter(zeros(gates, hidden_size, dtype=dtype, device=device))
        if bias:
            self.bias_ih = Parameter(zeros(gates, dtype=dtype, device=device))
            self.bias_hh = Parameter(zeros(gates, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def _prepare(self, input, hx, states: int):
        """(input [N, I], states [N, H] each, batched?) with zeros for a missing hx."""
        if input.ndim not in (1, 2):
            raise ValueError(f"{type(self).__name__}: Expected input to be 1D or 2D, got "
                             f"{input.ndim}D instead")
        if input.shape[-1] != self.input_size:
            raise ShapeError(f"{type(self).__name__}: input has inconsistent input_size: got "
                             f"{input.shape[-1]} expected {self.input_size}", loc=user_loc())
        batched = input.ndim == 2
        x = input if batched else K.unsqueeze(input, 0)
        if hx is None:
            parts = [zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)] * states
        else:
            parts = list(hx) if states > 1 else [hx]
            parts = parts if batched else [K.unsqueeze(p, 0) for p in parts]
            for p in parts:
                if tuple(p.shape) != (x.shape[0], self.hidden_size):
                    raise ShapeError(f"{type(self).__name__}: expected hidden state of shape "
                                     f"{[x.shape[0], self.hidden_size]}, got "
                                     f"{list(p.shape)}", loc=user_loc())
        return F.linear(x, self.weight_ih, self.bias_ih), parts, batched

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


def _unbatch(t, batched: bool):
    return t if batched else K.squeeze(t, 0)


class RNNCell(RNNCellBase):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh).

    >>> import kiln
    >>> RNNCell(3, 4, nonlinearity="relu")(kiln.ones(2, 3)).shape
    kiln.Size([2, 4])
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)

    def forward(self, input, hx=None):
        gi, (h,), batched = self._prepare(input, hx, 1)
        return _unbatch(rnn_step(gi, h, self.weight_hh, self.bias_hh, self.nonlinearity),
                        batched)


class LSTMCell(RNNCellBase):
    """One LSTM step: forward(input, (h, c)=None) -> (h', c').

    >>> import kiln
    >>> [t.shape for t in LSTMCell(3, 4)(kiln.ones(3))]
    [kiln.Size([4]), kiln.Size([4])]
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        gi, (h, c), batched = self._prepare(input, hx, 2)
        h, c = lstm_step(gi, h, c, self.weight_hh, self.bias_hh)
        return _unbatch(h, batched), _unbatch(c, batched)


class GRUCell(RNNCellBase):
    """One GRU step: forward(input, h=None) -> h'.

    >>> import kiln
    >>> GRUCell(3, 4)(kiln.ones(2, 3)).shape
    kiln.Size([2, 4])
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        gi, (h,), batched = self._prepare(input, hx, 1)
        return _unbatch(gru_step(gi, h, self.weight_hh, self.bias_hh), batched)
