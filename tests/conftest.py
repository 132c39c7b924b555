import functools

import pytest

from partition import capture
from partition.zoo import get_model


@functools.lru_cache(maxsize=None)
def zoo_graph(name: str):
    """(model, inputs, graph) of a zoo model, captured once per test session."""
    model, inputs = get_model(name)
    return model, inputs, capture(model, inputs, repeats=1, warmup=0)


@pytest.fixture
def zoo():
    return zoo_graph
