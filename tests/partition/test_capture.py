import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from partition import CaptureError, capture
from partition.zoo import get_model, model_names
from tests.models import SMALL_MODELS


@pytest.mark.parametrize("name", model_names())
def test_every_zoo_model_is_captured_with_exact_flops(zoo, name):
    model, inputs, graph = zoo(name)
    assert graph.method == "fx" and len(graph.nodes) > 10
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(*inputs)
    assert graph.total_flops == counter.get_total_flops()
    assert graph.total_param_bytes >= sum(p.numel() * 4 for p in model.parameters())
    assert all(n.host_time_s >= 0 for n in graph.nodes) and graph.host_time_s > 0


def test_output_bytes_match_the_real_tensors(zoo):
    model, inputs, graph = zoo("resnet18")
    seen = {}

    class Record(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            seen[n.name] = out
            return out

    with torch.inference_mode():
        Record(graph.module).run(*inputs)
    for node in graph.nodes:
        value = seen[node.name]
        if isinstance(value, torch.Tensor):
            assert node.bytes_out == value.numel() * value.element_size()
            assert node.outputs[0].shape == tuple(value.shape)


def test_multi_input_multi_output():
    model, inputs = SMALL_MODELS["multi_io"]()
    graph = capture(model, inputs, timing="analytic")
    assert graph.inputs == ["image", "meta"]
    assert len(graph.outputs) == 2
    out = {n.name: n for n in graph.nodes}
    assert out[graph.outputs[1]].outputs[0].shape == (2, 4, 8, 8)  # the feature map


@pytest.mark.parametrize("name", ["skip", "concat"])
def test_skip_and_concat_have_values_with_several_consumers(name):
    model, inputs = SMALL_MODELS[name]()
    graph = capture(model, inputs, timing="analytic")
    assert max(len(c) for c in graph.consumers.values()) >= 2
    if name == "concat":
        assert any(n.target == "cat" and len(n.inputs) == 3 for n in graph.nodes)


class ShapeBranch(nn.Module):
    """fx cannot branch on a traced shape; torch.export specialises it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        if x.shape[-1] > 4:
            return self.lin(x) * 2
        return x


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.body(x))


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent: neither fx nor export can capture this
            return x + 1
        return x - 1


def test_export_is_the_fallback_when_fx_fails():
    x = torch.randn(2, 8)
    graph = capture(ShapeBranch().eval(), (x,), timing="analytic")
    assert graph.method == "export"
    assert any(n.flops > 0 for n in graph.nodes)


def test_uncapturable_model_names_the_construct_and_module():
    with pytest.raises(CaptureError) as err:
        capture(DataDependent().eval(), (torch.randn(2, 8),), timing="analytic")
    msg = str(err.value)
    assert "module 'gate'" in msg
    assert "test_capture.py" in msg and "if x.sum() > 0" in msg
    assert "torch.export failed" in msg and "torch.fx failed" in msg


def test_unknown_zoo_model():
    with pytest.raises(CaptureError, match="zoo models are"):
        get_model("resnet9000")


def test_measured_tier_profiles_override_the_prediction(zoo, tmp_path):
    from partition import CostModel, PartitionError, Topology

    _, _, graph = zoo("resnet18")
    topo = Topology.load("three_tier")  # device speed 0.1: 10x this host's time
    predicted = CostModel(graph, topo)
    node = graph.nodes[5].name
    assert predicted.compute_s(node, 0) == pytest.approx(graph[node].host_time_s / 0.1)
    measured = CostModel(graph, topo, profiles={"device": {node: 0.5}})
    assert measured.compute_s(node, 0) == 0.5  # measured on the device itself
    assert measured.compute_s(graph.nodes[6].name, 0) == predicted.compute_s(graph.nodes[6].name, 0)
    path = tmp_path / "profiles.json"
    measured.save_profiles(path)
    again = CostModel(graph, topo, profiles=CostModel.load_profiles(path))
    assert (again.table == measured.table).all()
    with pytest.raises(PartitionError, match="not on the topology's path"):
        CostModel(graph, topo, profiles={"cloud": {}})
