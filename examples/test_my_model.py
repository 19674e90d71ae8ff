"""Compile tests for your own model, ready to copy: the training step of the digits
classifier (examples/digits_classifier.py) compiles to one graph, runs 20 steps without
recompiling, and gives what the plain Python gives (loss, parameters, gradients, momentum).
Run it with:

    pytest examples/test_my_model.py
"""
import itertools

import pytest

import kiln as torch
import kiln.nn as nn
import kiln.optim as optim
from kiln.testing import assert_compiles, assert_matches_eager, no_recompiles

from digits_classifier import Net, load_data


@pytest.fixture
def training():
    """(train_step, 20 batches): a fresh model and optimizer per test."""
    torch.manual_seed(0)
    model = Net()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    def train_step(inputs, targets):
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss

    train_loader, _ = load_data(batch_size=64)
    return train_step, list(itertools.islice(train_loader, 20))


def test_the_training_step_compiles_to_one_graph(training):
    train_step, batches = training
    assert_compiles(train_step, *batches[0], graphs=1, breaks=0)


def test_twenty_steps_compile_once(training):
    train_step, batches = training
    step = torch.jit(train_step)
    with no_recompiles():
        losses = [step(inputs, targets).item() for inputs, targets in batches]
    assert losses[-1] < losses[0]


def test_the_compiled_step_matches_eager(training):
    train_step, batches = training
    assert_matches_eager(train_step, *batches[0])     # the first call: traced here
    step = torch.jit(train_step)
    for inputs, targets in batches[1:5]:
        step(inputs, targets)
    assert_matches_eager(step, *batches[5])           # a warm step: the cached graph
