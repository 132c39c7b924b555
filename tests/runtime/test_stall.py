"""A slow stage is not a dead one. The driver's stall safety net (no result for ``stall_s``) feeds every
undelivered input to its device again and has every stage replay what is unacknowledged; a stage that still
holds a frame drops the repeat (counted in ``repeats``), and a stage replays only frames not already on their
way. Before, a device slower than ``stall_s`` computed (and sent up its scarce link) each frame several times,
and a slow link fell further behind with each stall."""

import logging

import pytest

from runtime.pipeline import Pipeline
from tests.runtime.test_pipeline import chain_plan, fan_in_topology, slowed

pytestmark = pytest.mark.ray_local


def test_a_device_slower_than_the_stall_time_computes_each_frame_once(caplog):
    topo = fan_in_topology(devices=1, gateways=1, emulate=True, fps=2)
    model, plan = chain_plan(topo)
    # the device takes 0.8 s a frame: with frames every 0.5 s, results come further and further apart than 0.3 s
    with caplog.at_level(logging.WARNING, logger="runtime.pipeline"):
        with Pipeline(slowed(plan, (0.8, 0.001, 0.001)), model, topo, max_batch=1, stall_s=0.3) as pipe:
            report = pipe.stream(2.0, fps=2)
    assert any("no result for 0.3 s" in r.getMessage() for r in caplog.records)  # the safety net ran (feeding all again)
    sent = report["sent_by_sources"]
    assert sent >= 4 and report["frames_delivered"] == sent
    device = next(n for n in report["nodes"] if n["node"] == "device-0")
    assert device["frames"] == sent  # each frame computed once on the device: the repeats were dropped
