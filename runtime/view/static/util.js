// Small shared helpers: formatting, colours, canvas sizing, nice axis ticks.

export const COLORS = {
  text: "#d8dee7",
  muted: "#8b96a5",
  faint: "#5d6876",
  grid: "#232b36",
  axis: "#3a4452",
  good: "#3fb950",
  warn: "#d29922",
  bad: "#f85149",
};

export function num(v) {
  return typeof v === "number" && Number.isFinite(v);
}

export function fmt(v, digits = 1, dash = "–") {
  return num(v) ? v.toFixed(digits) : dash;
}

export function fmtInt(v, dash = "–") {
  return num(v) ? String(Math.round(v)) : dash;
}

export function fmtBytesRate(b) {
  if (!num(b)) return "–";
  const bits = b * 8;
  if (bits >= 1e9) return (bits / 1e9).toFixed(2) + " Gbit/s";
  if (bits >= 1e6) return (bits / 1e6).toFixed(2) + " Mbit/s";
  if (bits >= 1e3) return (bits / 1e3).toFixed(1) + " kbit/s";
  return bits.toFixed(0) + " bit/s";
}

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

export function svgEl(tag, attrs = {}, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Size a canvas's backing store to its CSS box times the device pixel ratio; returns
// {ctx, w, h} in CSS pixels with the context scaled, or null when the box is empty.
export function fitCanvas(canvas) {
  const rect = canvas.getBoundingClientRect();
  const w = Math.max(0, Math.floor(rect.width));
  const h = Math.max(0, Math.floor(rect.height));
  if (w < 2 || h < 2) return null;
  const dpr = window.devicePixelRatio || 1;
  const bw = Math.round(w * dpr), bh = Math.round(h * dpr);
  if (canvas.width !== bw || canvas.height !== bh) {
    canvas.width = bw;
    canvas.height = bh;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h, dpr };
}

// "Nice" axis ticks covering [lo, hi] with about `count` intervals.
export function niceTicks(lo, hi, count = 5) {
  if (!num(lo) || !num(hi)) return { lo: 0, hi: 1, step: 0.2, ticks: [0, 0.2, 0.4, 0.6, 0.8, 1] };
  if (hi - lo < 1e-9) {
    const pad = Math.abs(hi) > 1e-9 ? Math.abs(hi) * 0.1 : 1;
    lo -= pad; hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const nlo = Math.floor(lo / step + 1e-9) * step;
  const nhi = Math.ceil(hi / step - 1e-9) * step;
  const ticks = [];
  for (let v = nlo; v <= nhi + step * 1e-6; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return { lo: nlo, hi: nhi, step, ticks };
}

export function tickLabel(v, step) {
  const abs = Math.abs(step);
  const digits = abs >= 1 ? 0 : Math.min(4, Math.ceil(-Math.log10(abs) - 1e-9));
  return v.toFixed(digits);
}

// Utilisation 0..1(+) -> colour from green through amber to red.
export function utilColor(u) {
  if (!num(u)) return "#4a5564";
  const t = Math.max(0, Math.min(1, u));
  const stops = [[0, [63, 185, 80]], [0.5, [210, 180, 40]], [0.8, [240, 120, 40]], [1, [248, 81, 73]]];
  for (let i = 1; i < stops.length; i++) {
    const [t1, c1] = stops[i];
    const [t0, c0] = stops[i - 1];
    if (t <= t1) {
      const f = (t - t0) / (t1 - t0);
      const c = c0.map((a, k) => Math.round(a + (c1[k] - a) * f));
      return `rgb(${c[0]},${c[1]},${c[2]})`;
    }
  }
  return "rgb(248,81,73)";
}

export const UTIL_GRADIENT = "linear-gradient(90deg, rgb(63,185,80), rgb(210,180,40) 50%, rgb(240,120,40) 80%, rgb(248,81,73))";

// Controller names and colours for the delay series and the final banner.
const CONTROLLERS = {
  camera: ["camera (tierpipe)", "#58a6ff"],
  fixed_time: ["fixed-time", "#8b96a5"],
  actuated: ["actuated", "#d29922"],
  max_pressure_truth: ["max-pressure, true queues", "#bc8cff"],
  greedy_truth: ["greedy, true queues", "#3fb950"],
};
const EXTRA = ["#ff7b72", "#39c5cf", "#f0883e", "#a5d6ff", "#e3b341", "#db61a2"];

export function controllerInfo(key, i = 0) {
  if (CONTROLLERS[key]) return { label: CONTROLLERS[key][0], color: CONTROLLERS[key][1] };
  return { label: key.replace(/_/g, " "), color: EXTRA[i % EXTRA.length] };
}
