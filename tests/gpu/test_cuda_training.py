"""The digits classifier trained on the GPU reaches the CPU's accuracy (issue: "the digits
classifier trains on device="cuda" to the CPU's accuracy"), and a jitted training step,
compiled as one CUDA graph, gives the CPU's losses and parameters."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import kiln

from test_cuda_jit import _train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not kiln.cuda.driver_available(),
                                 reason="no NVIDIA GPU and driver here "
                                        "(kiln.cuda.driver_available() is False)")]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _example():
    path = os.path.join(ROOT, "examples", "digits_classifier.py")
    spec = importlib.util.spec_from_file_location("digits_classifier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_classifier_reaches_the_cpus_accuracy_on_the_gpu(capsys):
    example = _example()
    cpu = example.main(epochs=20, device="cpu")
    cuda = example.main(epochs=20, device="cuda")
    print(f"digits accuracy: cpu {cpu:.4f}, cuda {cuda:.4f}")
    assert cuda >= 0.95 and abs(cuda - cpu) <= 2 / 360


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_a_jitted_training_step_on_the_gpu_equals_the_cpus(opt_name):
    cpu_losses, cpu_params, _, _ = _train("cpu", True, steps=8, opt_name=opt_name)
    losses, params, run, _ = _train("cuda", True, steps=8, opt_name=opt_name)
    assert run.traces == 1
    np.testing.assert_allclose(losses, cpu_losses, rtol=1e-5)
    for g, c in zip(params, cpu_params):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-6)
