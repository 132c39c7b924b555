// tierpipe live view: connects to /ws, takes one "static" message then "update" messages,
// and renders the header figures, the map, the camera tiles, the tiers graph and the charts.
import { MapView } from "./map.js";
import { CameraGrid } from "./cameras.js";
import { TiersView } from "./tiers.js";
import { LineChart } from "./charts.js";
import { el, fmt, fmtInt, num, controllerInfo } from "./util.js";

const $ = (id) => document.getElementById(id);

const state = { static: null, update: null, ws: null, retryMs: 1000, everConnected: false };

const mapView = new MapView($("map"), $("map-labels"), $("map-empty"));
const cameras = new CameraGrid($("camera-grid"));
const tiers = new TiersView({
  svg: $("tiers-graph"), wrap: $("tiers-graph-wrap"), planBox: $("plan-box"),
  switchList: $("switch-list"), legend: $("tiers-legend"),
});
const fpsChart = new LineChart($("chart-fps"), { xLabel: "wall time, s", yLabel: "fps", empty: "no throughput yet" });
const latChart = new LineChart($("chart-latency"), { xLabel: "wall time, s", yLabel: "ms", unit: " ms", empty: "no latency yet" });
const delayChart = new LineChart($("chart-delay"), { xLabel: "simulated time, s", yLabel: "s / vehicle", unit: " s", empty: "no vehicles arrived yet" });

function setText(id, text) {
  const e = $(id);
  if (e && e.textContent !== text) e.textContent = text;
}

function setConn(kind, text) {
  document.body.dataset.conn = kind;
  setText("conn", text);
}

// ---------- static ----------
function onStatic(msg) {
  state.static = msg;
  const mode = msg.mode === "run" ? "run" : "demo";
  document.body.dataset.mode = mode;
  const title = msg.title || "tierpipe";
  setText("title", title);
  document.title = `${title} · tierpipe`;
  const net = mode === "demo" ? msg.network || null : null;
  const cams = Array.isArray(msg.cameras) ? msg.cameras : [];
  const junctions = net && Array.isArray(net.junctions) ? net.junctions : [];
  setText("junction-count", String(junctions.filter((j) => j && j.tls !== null && j.tls !== undefined).length));
  setText("camera-count", String(cams.length));
  mapView.setStatic(net);
  cameras.setStatic(mode === "demo" ? cams : []);
  tiers.setStatic(msg.tiers);
  document.body.classList.toggle("no-delay", mode === "run");
}

// ---------- update ----------
function onUpdate(u) {
  state.update = u;
  const phase = u.phase || "starting";
  document.body.dataset.phase = phase;
  setText("phase", phase);
  setText("status", u.status || "");

  const sim = u.sim;
  if (sim && num(sim.t)) {
    const end = num(sim.end) ? ` / ${Math.round(sim.end)}` : "";
    setText("sim-time", `t = ${Math.round(sim.t)}${end} s`);
    const begin = num(sim.begin) ? sim.begin : 0;
    const frac = num(sim.end) && sim.end > begin ? (sim.t - begin) / (sim.end - begin) : 0;
    $("sim-progress").style.width = `${(100 * Math.max(0, Math.min(1, frac))).toFixed(1)}%`;
    $("sim-time").parentElement.parentElement.title = `simulated time${num(sim.seed) ? `, seed ${sim.seed}` : ""}`;
  } else {
    setText("sim-time", "t = –");
    $("sim-progress").style.width = "0";
  }

  const p = u.pipeline;
  setText("fps", fmt(p?.fps));
  setText("p50", fmt(p?.p50_ms));
  setText("p99", fmt(p?.p99_ms));
  setText("delivered", fmtInt(p?.delivered));
  setText("sent-dropped", p ? `/ ${fmtInt(p.sent)}${num(p.dropped) && p.dropped > 0 ? ` · ${fmtInt(p.dropped)} dropped` : ""}` : "");

  if (state.static && document.body.dataset.mode === "demo") {
    const veh = Array.isArray(u.vehicles) ? u.vehicles : [];
    mapView.update(veh, u.signals);
    let halted = 0;
    for (const v of veh) if (v && v[2]) halted++;
    setText("vehicle-count", `${veh.length} vehicles · ${halted} halted`);
    cameras.update(u.cameras);
  }
  tiers.update(p || null);
  drawCharts(u.series || {});
  renderFinal(phase === "done" ? u.final : null);
}

function drawCharts(series) {
  const t = Array.isArray(series.t) ? series.t : [];
  fpsChart.set([{ label: "fps", color: "#58a6ff", xs: t, ys: series.fps || [], width: 1.8 }]);
  latChart.set([
    { label: "p50", color: "#3fb950", xs: t, ys: series.p50_ms || [] },
    { label: "p99", color: "#f0883e", xs: t, ys: series.p99_ms || [] },
  ]);
  const delay = series.delay || {};
  const dt = Array.isArray(delay.t) ? delay.t : [];
  const lines = [];
  let extra = 0;
  for (const [key, ys] of Object.entries(delay)) {
    if (key === "t" || !Array.isArray(ys) || !ys.length) continue;
    const info = controllerInfo(key, extra);
    if (info.color && !["camera", "fixed_time", "actuated", "max_pressure_truth", "greedy_truth"].includes(key)) extra++;
    lines.push({ key, label: info.label, color: info.color, xs: dt, ys, width: key === "camera" ? 2.2 : 1.5,
      dash: key.endsWith("_truth") ? [5, 3] : undefined });
  }
  const order = ["camera", "fixed_time", "actuated", "max_pressure_truth", "greedy_truth"];
  lines.sort((a, b) => (order.indexOf(a.key) + 1 || 99) - (order.indexOf(b.key) + 1 || 99));
  const hasDelay = lines.length > 0 && dt.length > 0;
  const hide = document.body.dataset.mode === "run" && !hasDelay;
  if (document.body.classList.contains("no-delay") !== hide) document.body.classList.toggle("no-delay", hide);
  delayChart.set(lines);
}

function renderFinal(final) {
  const banner = $("final-banner");
  if (!final) {
    if (!banner.hidden) banner.hidden = true;
    state.finalSig = null;
    return;
  }
  const sig = JSON.stringify(final);
  if (sig === state.finalSig) return;
  state.finalSig = sig;
  const lines = $("final-lines");
  lines.replaceChildren(...(Array.isArray(final.lines) ? final.lines : []).map((l) => el("li", null, String(l))));
  const delay = $("final-delay");
  delay.replaceChildren();
  const entries = Object.entries(final.delay || {}).filter(([, v]) => num(v)).sort((a, b) => a[1] - b[1]);
  entries.forEach(([key, v], i) => {
    const info = controllerInfo(key, i);
    const chip = el("span", `delay-chip${i === 0 && entries.length > 1 ? " best" : ""}`);
    const sw = el("i");
    sw.style.background = info.color;
    chip.append(sw, document.createTextNode(`${info.label} ${v.toFixed(1)} s`));
    chip.dataset.controller = key;
    delay.appendChild(chip);
  });
  if (entries.length) delay.prepend(el("span", "muted small", "mean delay per vehicle:"));
  banner.hidden = false;
}

// ---------- socket ----------
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let ws;
  try {
    ws = new WebSocket(`${proto}//${location.host}/ws`);
  } catch (err) {
    scheduleRetry();
    return;
  }
  state.ws = ws;
  setConn(state.everConnected ? "retrying" : "connecting", state.everConnected ? "disconnected, retrying" : "connecting");
  ws.onopen = () => {
    state.everConnected = true;
    state.retryMs = 1000;
    setConn("live", "live");
  };
  ws.onmessage = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (err) {
      console.warn("tierpipe view: bad message", err);
      return;
    }
    try {
      if (msg.type === "static") onStatic(msg);
      else if (msg.type === "update") onUpdate(msg);
    } catch (err) {
      console.error("tierpipe view: cannot render", msg.type, err);
    }
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    scheduleRetry();
  };
  ws.onerror = () => { /* onclose follows */ };
}

function scheduleRetry() {
  setConn("retrying", "disconnected, retrying");
  const wait = state.retryMs;
  state.retryMs = Math.min(5000, Math.round(state.retryMs * 1.5));
  setTimeout(connect, wait);
}

connect();
