// The city map: lanes and junctions drawn once to an offscreen canvas, then on every update
// the stop-line signal bars and the vehicles on top. SUMO y is up; the canvas y is down.
import { fitCanvas, el, num } from "./util.js";

const SIGNAL_RANK = { G: 6, g: 5, y: 4, Y: 4, u: 3, r: 2, R: 2, s: 2, o: 1, O: 1 };
const SIGNAL_COLOR = {
  G: "#2fd064", g: "#8fe39a", y: "#f2c12e", Y: "#f2c12e", u: "#f08a24",
  r: "#ef4b4b", R: "#ef4b4b", s: "#ef4b4b", o: "#6e7681", O: "#6e7681",
};

export class MapView {
  constructor(canvas, labels, empty) {
    this.canvas = canvas;
    this.labels = labels;
    this.empty = empty;
    this.net = null;
    this.vehicles = [];
    this.signals = {};
    this.layer = null; // offscreen canvas with the static network
    this.view = null; // {w, h, dpr, s, ox, oy}
    this.pending = false;
    new ResizeObserver(() => { this.layer = null; this.requestDraw(); }).observe(canvas);
  }

  setStatic(network) {
    this.net = network || null;
    this.layer = null;
    this.labels.replaceChildren();
    this.labelEls = [];
    this.empty.hidden = !!this.net;
    if (!this.net) { this.requestDraw(); return; }
    const lanes = Array.isArray(this.net.lanes) ? this.net.lanes : [];
    const junctions = Array.isArray(this.net.junctions) ? this.net.junctions : [];
    this.laneById = new Map();
    for (const l of lanes) if (l && Array.isArray(l.shape) && l.shape.length >= 2) this.laneById.set(l.id, l);
    this.bounds = this.computeBounds(lanes, junctions);
    const tlsPos = new Map((this.net.tls || []).map((t) => [t.id, t]));
    // one label per signalised junction
    for (const j of junctions) {
      if (j.tls === null || j.tls === undefined) continue;
      const pts = Array.isArray(j.shape) ? j.shape.filter((p) => p && num(p[0]) && num(p[1])) : [];
      let left, top;
      if (pts.length) {
        left = Math.min(...pts.map((p) => p[0]));
        top = Math.max(...pts.map((p) => p[1]));
      } else {
        const t = tlsPos.get(j.tls);
        left = t ? t.x : 0; top = t ? t.y : 0;
      }
      const lab = el("div", "junction-label", j.id);
      lab.dataset.junction = j.id;
      lab.dataset.tls = j.tls;
      this.labels.appendChild(lab);
      this.labelEls.push({ el: lab, left, top, tls: j.tls });
    }
    this.labels.classList.toggle("dense", this.labelEls.length > 30);
    // per tls: for each incoming lane, the link indices controlled on it
    this.tlsLanes = [];
    for (const t of this.net.tls || []) {
      const byLane = new Map();
      (t.links || []).forEach((laneId, i) => {
        if (!this.laneById.has(laneId)) return;
        if (!byLane.has(laneId)) byLane.set(laneId, []);
        byLane.get(laneId).push(i);
      });
      this.tlsLanes.push({ id: t.id, lanes: [...byLane.entries()] });
    }
    this.requestDraw();
  }

  computeBounds(lanes, junctions) {
    const b = this.net.bounds;
    if (Array.isArray(b) && b.length === 4 && b.every(num) && b[2] > b[0] && b[3] > b[1]) return b;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const shape of [...lanes.map((l) => l.shape), ...junctions.map((j) => j.shape)]) {
      for (const p of shape || []) {
        if (!p || !num(p[0]) || !num(p[1])) continue;
        x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]);
        y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]);
      }
    }
    if (!Number.isFinite(x0)) return [0, 0, 100, 100];
    if (x1 - x0 < 1) x1 = x0 + 1;
    if (y1 - y0 < 1) y1 = y0 + 1;
    return [x0, y0, x1, y1];
  }

  update(vehicles, signals) {
    this.vehicles = Array.isArray(vehicles) ? vehicles : [];
    this.signals = signals && typeof signals === "object" ? signals : {};
    this.requestDraw();
  }

  requestDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  computeView(w, h, dpr) {
    const [x0, y0, x1, y1] = this.bounds;
    const margin = Math.max(14, Math.min(w, h) * 0.04);
    const s = Math.min((w - 2 * margin) / (x1 - x0), (h - 2 * margin) / (y1 - y0));
    const ox = (w - (x1 - x0) * s) / 2, oy = (h - (y1 - y0) * s) / 2;
    return { w, h, dpr, s, X: (x) => ox + (x - x0) * s, Y: (y) => oy + (y1 - y) * s };
  }

  buildLayer(v) {
    const layer = document.createElement("canvas");
    layer.width = Math.round(v.w * v.dpr);
    layer.height = Math.round(v.h * v.dpr);
    const ctx = layer.getContext("2d");
    ctx.setTransform(v.dpr, 0, 0, v.dpr, 0, 0);
    ctx.fillStyle = "#10151c";
    ctx.fillRect(0, 0, v.w, v.h);
    ctx.lineCap = "butt";
    ctx.lineJoin = "round";
    // lanes: asphalt, then a thin darker outline to separate neighbouring lanes
    for (const l of this.laneById.values()) {
      const wpx = Math.max(1, (num(l.width) ? l.width : 3.2) * v.s);
      ctx.beginPath();
      l.shape.forEach((p, i) => (i ? ctx.lineTo(v.X(p[0]), v.Y(p[1])) : ctx.moveTo(v.X(p[0]), v.Y(p[1]))));
      ctx.strokeStyle = "#4b5462";
      ctx.lineWidth = wpx;
      ctx.stroke();
      if (wpx > 4) {
        ctx.strokeStyle = "#3a414c";
        ctx.lineWidth = wpx - 1.5;
        ctx.stroke();
      }
    }
    for (const j of this.net.junctions || []) {
      const pts = (j.shape || []).filter((p) => p && num(p[0]) && num(p[1]));
      if (pts.length < 3) continue;
      ctx.beginPath();
      pts.forEach((p, i) => (i ? ctx.lineTo(v.X(p[0]), v.Y(p[1])) : ctx.moveTo(v.X(p[0]), v.Y(p[1]))));
      ctx.closePath();
      ctx.fillStyle = j.tls ? "#4a5361" : "#3d4551";
      ctx.fill();
      if (j.tls) {
        ctx.strokeStyle = "#667183";
        ctx.lineWidth = 1;
        ctx.stroke();
      }
    }
    return layer;
  }

  placeLabels(v) {
    for (const lab of this.labelEls || []) {
      // anchored by its bottom-right corner at the junction's top-left corner (usually a block corner)
      lab.el.style.left = `${(v.X(lab.left) - 1).toFixed(1)}px`;
      lab.el.style.top = `${(v.Y(lab.top) - 1).toFixed(1)}px`;
    }
  }

  draw() {
    const fit = fitCanvas(this.canvas);
    if (!fit) return;
    const { ctx, w, h, dpr } = fit;
    if (!this.net) { ctx.clearRect(0, 0, w, h); return; }
    if (!this.layer || !this.view || this.view.w !== w || this.view.h !== h || this.view.dpr !== dpr) {
      this.view = this.computeView(w, h, dpr);
      this.layer = this.buildLayer(this.view);
      this.placeLabels(this.view);
    }
    const v = this.view;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(this.layer, 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.drawSignals(ctx, v);
    this.drawVehicles(ctx, v);
  }

  drawSignals(ctx, v) {
    const thick = Math.max(3, Math.min(6, 1.6 * v.s));
    ctx.lineCap = "butt";
    for (const t of this.tlsLanes || []) {
      const state = this.signals[t.id];
      if (typeof state !== "string") continue;
      for (const [laneId, idx] of t.lanes) {
        let best = null, rank = -1;
        for (const i of idx) {
          const c = state[i];
          const r = SIGNAL_RANK[c] ?? 0;
          if (c !== undefined && r > rank) { rank = r; best = c; }
        }
        if (best === null) continue;
        const lane = this.laneById.get(laneId);
        const sh = lane.shape;
        const p1 = sh[sh.length - 1];
        let p0 = sh[sh.length - 2];
        for (let k = sh.length - 2; k >= 0; k--) {
          p0 = sh[k];
          if (Math.hypot(p1[0] - p0[0], p1[1] - p0[1]) > 0.01) break;
        }
        const ex = v.X(p1[0]), ey = v.Y(p1[1]);
        let dx = ex - v.X(p0[0]), dy = ey - v.Y(p0[1]);
        const len = Math.hypot(dx, dy) || 1;
        dx /= len; dy /= len;
        const half = Math.max(2, ((num(lane.width) ? lane.width : 3.2) * v.s) / 2);
        const cx = ex - dx * thick * 0.5, cy = ey - dy * thick * 0.5;
        ctx.strokeStyle = SIGNAL_COLOR[best] || "#6e7681";
        ctx.lineWidth = thick;
        ctx.beginPath();
        ctx.moveTo(cx - dy * half, cy + dx * half);
        ctx.lineTo(cx + dy * half, cy - dx * half);
        ctx.stroke();
      }
    }
    for (const lab of this.labelEls || []) {
      const st = this.signals[lab.tls];
      lab.el.title = `junction ${lab.el.dataset.junction} · light ${lab.tls}` + (typeof st === "string" ? ` · ${st}` : "");
    }
  }

  drawVehicles(ctx, v) {
    const r = Math.max(2, Math.min(4, 1.3 * v.s));
    const moving = new Path2D(), halted = new Path2D();
    let nh = 0, n = 0;
    for (const veh of this.vehicles) {
      if (!veh || !num(veh[0]) || !num(veh[1])) continue;
      const x = v.X(veh[0]), y = v.Y(veh[1]);
      const path = veh[2] ? halted : moving;
      path.moveTo(x + r, y);
      path.arc(x, y, r, 0, Math.PI * 2);
      n++;
      if (veh[2]) nh++;
    }
    ctx.fillStyle = "#56c8f5";
    ctx.fill(moving);
    ctx.fillStyle = "#ff5a52";
    ctx.fill(halted);
    this.counts = { n, halted: nh };
  }
}
