"""Early exits on a real local Ray: results equal the eager rule, frames of one source exit on different
tiers and still arrive once and in order, fan-in batches mix exited and unexited frames, and a stage
actor killed mid-run loses and duplicates nothing."""

import time

import pytest
import torch

from partition.exit_calib import calibrate
from runtime.pipeline import Pipeline
from tests.conftest import local_ray
from tests.partition.test_exits import chain_with_exits, plan_with_live
from tests.runtime.test_pipeline import assert_killed, fan_in_topology, run_while_killing, slowed

pytestmark = pytest.mark.ray_local


def exit_setup():
    """Chain(16, 6) with exits after layers.0 (on the device) and layers.2 (on the gateway), thresholds at which
    about 30% of frames leave on the device and 50% of the rest on the gateway."""
    em, data = chain_with_exits()
    cal = calibrate(em, data)
    live = {"layers.0": (cal.thresholds(0, (0.3,))[0], 0), "layers.2": (cal.thresholds(1, (0.5,))[0], 1)}
    thresholds = {name: thr for name, (thr, _) in live.items()}
    return em, thresholds, live


def eager_rule(em, inputs, thresholds):
    torch.set_num_threads(1)
    return [em.decide(x, thresholds) for x in inputs]


def check_exactly_once_in_order(outputs, want, inputs):
    assert len(outputs) == len(inputs)
    for got, (ref, _) in zip(outputs, want):  # pipe.run returns results in input order, each once
        torch.testing.assert_close(got, ref)


def test_frames_exit_on_different_tiers_and_fan_in_batches_mix_them(ray_local):
    em, thresholds, live = exit_setup()
    topo = fan_in_topology(devices=2, gateways=1)  # fan-in at the gateway: four actors to start, not seven
    plan = plan_with_live(em, live, topo)
    torch.manual_seed(1)
    inputs = [(torch.randn(1, 16),) for _ in range(160)]
    want = eager_rule(em, inputs, thresholds)
    where = [int(at) for _, at in want]
    assert {-1, 0, 1} <= set(where)  # some frames leave on the device, some on the gateway, some go all the way
    with Pipeline(plan, em, topo, max_batch=8, max_wait_ms=50, emulate=False) as pipe:
        outputs = pipe.run(inputs)
        report = pipe.report()
    check_exactly_once_in_order(outputs, want, inputs)
    tiers = {t["tier"]: t for t in report["tiers"]}
    assert tiers["device"]["exited"] == where.count(0) and tiers["gateway"]["exited"] == where.count(1)
    # fan-in batches formed of frames to run (more than one per batch), and some held exited frames passing through too
    assert tiers["gateway"]["batchable"] and tiers["gateway"]["batch_mean"] > 1.0 and tiers["gateway"]["mixed_batches"] > 0
    assert tiers["gateway"]["frames"] == len(inputs)
    exits = report["exits"]
    assert exits["rate_by_tier"]["device"] == pytest.approx(where.count(0) / len(inputs))
    assert exits["rate_by_tier"]["edge"] == pytest.approx(where.count(-1) / len(inputs))
    assert report["frames_delivered"] == len(inputs) and report["duplicates_dropped"] == 0


@pytest.fixture(scope="module")
def pipe_with_exits_to_kill():
    """``(em, thresholds, pipe)``: one started pipeline for the kill cases, whose setup is the same (its start
    was most of each case); each counts from where the one before it left off."""
    local_ray()
    em, thresholds, live = exit_setup()
    # emulated 8 ms per frame on every tier: each device takes about 1.2 s for its 150 frames
    topo = fan_in_topology(devices=2, gateways=1, emulate=True)
    plan = slowed(plan_with_live(em, live, topo), (0.008, 0.008, 0.008))
    with Pipeline(plan, em, topo, max_batch=1, credits=2, stall_s=2.0) as pipe:
        yield em, thresholds, pipe


@pytest.mark.parametrize("victim", ["gateway-0", "device-1"])
def test_killing_a_stage_actor_with_exits_loses_and_duplicates_nothing(ray_local, pipe_with_exits_to_kill, victim):
    import ray

    # the victim dies once it has taken 20 frames, so most of the run (exited frames and others) is still ahead of it
    em, thresholds, pipe = pipe_with_exits_to_kill
    torch.manual_seed(2)
    inputs = [(torch.randn(1, 16),) for _ in range(300)]
    want = eager_rule(em, inputs, thresholds)
    start = time.perf_counter()
    outputs, report, seen = run_while_killing(ray, pipe, victim, inputs)
    assert_killed(seen, "process")
    passing = 150 if victim.startswith("device") else len(inputs)
    assert 20 <= seen["frames_in"] < passing  # killed mid-run
    check_exactly_once_in_order(outputs, want, inputs)
    assert seen["delivered"] == len(inputs)
    print(
        f"\n{victim} killed after {seen['frames_in']} frames: run took {time.perf_counter() - start:.1f} s, "
        f"replayed {sum(t['replayed'] for t in report['tiers'])}, duplicates dropped {report['duplicates_dropped']}"
    )
