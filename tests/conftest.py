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


@functools.cache
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


_LOCAL_RAY: dict = {}


def local_ray():
    """The local Ray the local-pipeline tests share: started on first use, and started again when a test
    in between shut it down or connected this process to another cluster (the cluster tests do both;
    before, every pipeline after them started a Ray of its own). Module-scoped fixtures call it too."""
    import ray

    from runtime.cluster import reset_token_cache

    if ray.is_initialized() and ray.get_runtime_context().gcs_address == _LOCAL_RAY.get("gcs"):
        return ray
    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    reset_token_cache()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)  # never a Ray found running
    _LOCAL_RAY["gcs"] = ray.get_runtime_context().gcs_address
    return ray


@pytest.fixture
def ray_local():
    """:func:`local_ray` for one test."""
    yield local_ray()
