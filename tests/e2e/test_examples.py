"""The runnable examples do what their docstrings say."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples",
                                                                     name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_classifier_reaches_95_percent(capsys):
    accuracy = _load("digits_classifier").main(epochs=20)
    assert accuracy >= 0.95
    assert "test accuracy" in capsys.readouterr().out


def test_digits_classifier_trains_on_the_simulated_gpu_like_on_the_cpu(monkeypatch, capsys):
    """KILN_FAKE_CUDA=1: every op of the training loop as a GPU kernel (computed by its
    reference); the accuracy after 3 epochs is the CPU's, within one held-out digit."""
    monkeypatch.setenv("KILN_FAKE_CUDA", "1")
    example = _load("digits_classifier")
    cpu = example.main(epochs=3, device="cpu")
    cuda = example.main(epochs=3, device="cuda")
    assert abs(cuda - cpu) <= 1 / 360 + 1e-9 and cpu > 0.5


def test_regression_with_adam_fits():
    first, last = _load("regression").main(steps=300)
    assert last < 0.01 * first
