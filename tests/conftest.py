import functools
import logging
import os
import random

import numpy as np
import pytest
import torch

from partition import capture
from partition.zoo import get_model


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state, whatever ran before it (shuffled orders too)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@functools.lru_cache(maxsize=None)
def zoo_graph(name: str):
    """(model, inputs, graph) of a zoo model, captured once per test session.

    Analytic timing: per-op costs come from FLOPs and bytes, so plans never depend on
    how busy the machine was while the suite ran.
    """
    model, inputs = get_model(name)
    return model, inputs, capture(model, inputs, timing="analytic")


@pytest.fixture
def zoo():
    return zoo_graph


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session's local-pipeline tests (Pipelines reuse it)."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from runtime.cluster import reset_token_cache

    if ray.is_initialized():
        ray.shutdown()
    reset_token_cache()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)   # never a Ray found running
    yield ray
    ray.shutdown()
