"""The live view's server and pipeline probe, read over a real WebSocket (no browser: tests/examples/test_view.py has one)."""

import asyncio
import json
import urllib.request

import pytest
import torch

from runtime.view.server import ViewError, ViewServer, is_loopback


def _read(url: str, count: int, timeout_s: float = 10.0) -> list[dict]:
    """The first ``count`` messages a page gets."""
    import aiohttp

    async def main():
        out = []
        async with aiohttp.ClientSession() as session, session.ws_connect(url.replace("http", "ws") + "ws") as ws:
            while len(out) < count:
                msg = await ws.receive(timeout=timeout_s)
                out.append(json.loads(msg.data))
        return out

    return asyncio.run(main())


def test_a_page_gets_the_static_part_then_the_latest_update_and_late_pages_too():
    with ViewServer(port=0, interval_s=0.05) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port != 0
        server.set_static({"title": "t", "mode": "run", "network": None, "cameras": [], "tiers": {"names": ["a"]}})
        server.publish({"phase": "starting", "n": 0})
        first = _read(server.url, 2)
        assert first[0] == {"type": "static", "title": "t", "mode": "run", "network": None, "cameras": [], "tiers": {"names": ["a"]}}
        assert first[1] == {"type": "update", "phase": "starting", "n": 0}
        server.publish({"phase": "done", "n": 7})  # a page that connects after the end still gets the final figures
        late = _read(server.url, 2)
        assert late[1] == {"type": "update", "phase": "done", "n": 7}
        page = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert "<html" in page.lower() and "/static/" in page  # the shipped page, no CDN
        assert not [src for src in __import__("re").findall(r'src="([^"]+)"', page) if src.startswith("http")]
        state = json.loads(urllib.request.urlopen(server.url + "state", timeout=5).read())
        assert state["update"] == {"phase": "done", "n": 7}


def test_a_taken_port_is_a_clear_error_and_loopback_is_told_apart():
    with ViewServer(port=0) as first:
        with pytest.raises(ViewError, match=rf"cannot listen on 127.0.0.1:{first.port} .*another --view-port \(0: any free port\)"):
            ViewServer(port=first.port).start()
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("198.18.0.1")


@pytest.mark.ray_local
def test_the_run_view_shows_a_running_pipeline(ray_local):
    from partition import capture, partition
    from runtime import Pipeline
    from runtime.view.run import RunView
    from tests.models import Chain
    from tests.runtime.test_pipeline import fan_in_topology

    torch.manual_seed(0)
    model, example = Chain().eval(), (torch.randn(1, 16),)
    topo = fan_in_topology(devices=2, gateways=1, fps=20)
    plan = partition(capture(model, example, timing="analytic"), topo, "throughput", pins={"layers.0": "device"})

    class Quiet:
        def print(self, *args, **kwargs):
            pass

    view = RunView(plan, "test", port=0)
    view.start(Quiet())
    try:
        with Pipeline(plan, model, topo, emulate=False) as pipe:
            view.attach(pipe)
            pipe.stream(1.5, on_update=lambda r: view.update("streaming"))
            view.update("streaming")
        static, update = _read(view.server.url, 2)
    finally:
        view.close()
    # the tiers graph from the plan: 2 devices -> 1 gateway -> 1 edge, links with their capacity (100 Mbit/s = 12.5 MB/s)
    assert static["tiers"]["names"] == ["device", "gateway", "edge"]
    assert [(n["id"], n["parent"]) for n in static["tiers"]["nodes"]] == [
        ("device-0", "gateway-0"),
        ("device-1", "gateway-0"),
        ("gateway-0", "edge-0"),
        ("edge-0", None),
    ]
    assert static["tiers"]["links"][0] == {"name": "device->gateway", "capacity_bytes_s": 12.5e6}
    fig = update["pipeline"]
    assert update["phase"] == "running" and fig["delivered"] == fig["sent"] > 0
    assert set(fig["nodes"]) == {"device-0", "device-1", "gateway-0", "edge-0"} and fig["nodes"]["device-0"]["frames"] > 0
    assert set(fig["links"]) == {"device-0", "device-1", "gateway-0"} and fig["links"]["device-0"]["capacity_bytes_s"] == 12.5e6
    assert fig["plan"]["ops"]["device"] > 0 and fig["plan"]["codecs"] == list(plan.codecs)
    assert len(update["series"]["t"]) >= 2 and update["series"]["fps"][-1] >= 0
