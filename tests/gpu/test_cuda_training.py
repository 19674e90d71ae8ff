"""The digits classifier trained on the GPU reaches the CPU's accuracy (issue: "the digits
classifier trains on device="cuda" to the CPU's accuracy")."""
from __future__ import annotations

import importlib.util
import os

import pytest

import kiln

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
