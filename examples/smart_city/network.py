"""Generate the demo's SUMO files: a 2x2 grid of signalised intersections and its time-varying demand.

Run once (needs ``pip install eclipse-sumo`` for ``netgenerate``); the small generated
files are committed under ``data/``, so the demo itself needs nothing but libsumo::

    python -m examples.smart_city.network

Every inner junction (``A0 A1 B0 B1``) has four incoming approaches of two lanes each
(16 approaches, one camera each); lanes are about 90-100 m long, so a camera sees the
whole approach. Both nets are the same grid; they differ only in the signal program
SUMO builds: ``static`` (fixed time, 42 s green + 3 s yellow per axis: a 90 s cycle)
and ``actuated`` (SUMO's gap-based actuated control).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from xml.sax.saxutils import quoteattr

DATA = Path(__file__).with_name("data")
NETS = {"static": DATA / "grid_static.net.xml", "actuated": DATA / "grid_actuated.net.xml"}
ROUTES = DATA / "routes.rou.xml"

# fringe entry -> exit straight across the grid; west-east rows, south-north columns
EW = [("left0A0", "B0right0"), ("left1A1", "B1right1"), ("right0B0", "A0left0"), ("right1B1", "A1left1")]
NS = [("bottom0A0", "A1top0"), ("bottom1B0", "B1top1"), ("top0A1", "A0bottom0"), ("top1B1", "B0bottom1")]
TURNS = [("left0A0", "A1top0"), ("right1B1", "B0bottom1"), ("bottom1B0", "A0left0"), ("top0A1", "B1right1")]
HEAVY_VPH, LIGHT_VPH, TURN_VPH = 780, 200, 90


def demand(duration_s: float) -> list[tuple[float, float, str, str, float]]:
    """(begin, end, from, to, vehicles/h): a rush-hour wave on the west-east axis, then on the south-north axis."""
    half = duration_s / 2
    flows = []
    for begin, end, heavy, light in ((0.0, half, EW, NS), (half, duration_s, NS, EW)):
        flows += [(begin, end, a, b, HEAVY_VPH) for a, b in heavy]
        flows += [(begin, end, a, b, LIGHT_VPH) for a, b in light]
        flows += [(begin, end, a, b, TURN_VPH) for a, b in TURNS]
    return flows


def routes_xml(duration_s: float) -> str:
    """A SUMO routes file: vehicle types of varied length, and Poisson flows (SUMO's ``--seed`` draws them)."""
    lines = ['<routes>',
             '  <vTypeDistribution id="mix">',
             '    <vType id="car" length="4.6" minGap="2.5" maxSpeed="13.9" color="1,1,1" probability="0.70"/>',
             '    <vType id="suv" length="5.4" minGap="2.5" maxSpeed="13.9" probability="0.18"/>',
             '    <vType id="van" length="7.0" minGap="2.5" maxSpeed="12.5" vClass="delivery" probability="0.08"/>',
             '    <vType id="truck" length="11.0" minGap="3.0" maxSpeed="11.0" vClass="truck" probability="0.04"/>',
             '  </vTypeDistribution>']
    for i, (begin, end, src, dst, vph) in enumerate(sorted(demand(duration_s))):
        lines.append(f'  <flow id="f{i}" type="mix" begin="{begin:.0f}" end="{end:.0f}" from={quoteattr(src)} '
                     f'to={quoteattr(dst)} period="exp({vph / 3600:.5f})" departLane="best" departSpeed="max"/>')
    lines.append('</routes>')
    return "\n".join(lines) + "\n"


def generate(duration_s: float = 3600.0) -> None:
    """Write both nets (netgenerate) and the routes file (plain XML) under ``data/``."""
    import sumo

    netgenerate = Path(sumo.SUMO_HOME) / "bin" / "netgenerate"
    DATA.mkdir(exist_ok=True)
    for kind, path in NETS.items():
        subprocess.run([str(netgenerate), "--grid", "--grid.number", "2", "--grid.length", "120",
                        "--grid.attach-length", "100", "--default.lanenumber", "2", "-j", "priority",
                        "--tls.set", "A0,A1,B0,B1", "--tls.default-type", kind, "--no-turnarounds", "true",
                        "--seed", "42", "-o", str(path)], check=True)
    ROUTES.write_text(routes_xml(duration_s))


if __name__ == "__main__":
    generate()
