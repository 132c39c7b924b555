import logging
import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session's local-pipeline tests (Pipelines reuse it)."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from runtime.cluster import reset_token_cache

    if ray.is_initialized():
        ray.shutdown()
    reset_token_cache()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()
