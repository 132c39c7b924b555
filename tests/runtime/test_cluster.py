"""A real multi-node Ray cluster on this machine: one raylet per tier node, labelled as in production."""

import logging

import pytest
import torch

from partition import Topology
from runtime.errors import PipelineError
from runtime.pipeline import NODE_LABEL, TIER_LABEL, Pipeline
from tests.runtime.test_pipeline import chain_plan, eager, fan_in_topology

pytestmark = pytest.mark.ray_cluster


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    from runtime.cluster import reset_token_cache

    if ray.is_initialized():
        ray.shutdown()
    reset_token_cache()  # no auth settings a test before this one left in the process
    topo = fan_in_topology(devices=2, gateways=1)
    nodes = [(tier.name, node) for tier in topo.path for node in tier.node_names()]
    tier, node = nodes[-1]
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "labels": {TIER_LABEL: tier, NODE_LABEL: node}})
    for tier, node in nodes[:-1]:
        c.add_node(num_cpus=1, labels={TIER_LABEL: tier, NODE_LABEL: node})
    ray.init(address=c.address, logging_level=logging.WARNING)
    yield c, topo
    ray.shutdown()
    c.shutdown()


def test_each_stage_runs_on_a_node_of_its_tier(cluster):
    import ray

    c, topo = cluster
    model, plan = chain_plan(topo)
    labels = {n["NodeID"]: n.get("Labels", {}) for n in ray.nodes() if n["Alive"]}
    inputs = [(torch.randn(1, 16),) for _ in range(20)]
    with Pipeline(plan, model, topo, address=c.address, max_batch=1) as pipe:
        placed = {node: ray.get(h.node_id.remote()) for node, h in pipe.stages.items()}
        outputs = pipe.run(inputs)
    assert len(set(placed.values())) == 4  # four raylets, one stage instance each
    for node, node_id in placed.items():
        assert labels[node_id][NODE_LABEL] == node
        assert labels[node_id][TIER_LABEL] == node.rsplit("-", 1)[0]
    for got, want in zip(outputs, eager(model, inputs)):
        assert torch.equal(got, want)


def test_a_tier_without_nodes_is_a_clear_error(cluster):
    c, topo = cluster
    data = topo.model_dump(by_alias=True, exclude={"source_file"})
    data["tiers"][1]["name"] = "fog"
    data["links"][0]["to"] = data["links"][1]["from"] = "fog"
    fog = Topology.from_dict(data)
    model, plan = chain_plan(fog)
    pipe = Pipeline(plan, model, fog, address=c.address)
    with pytest.raises(PipelineError, match=r"no Ray node of tier 'fog' for fog-0.*ray start --labels tier=fog"):
        pipe.start()
    # the edge actor was created before fog-0 failed: the failed start killed it and dropped every handle
    assert pipe.stages == {} and pipe.registry is None
