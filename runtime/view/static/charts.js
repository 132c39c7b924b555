// Hand-drawn line charts on a canvas: axes, nice ticks, grid, legend with last values.
import { COLORS, fitCanvas, niceTicks, tickLabel, num } from "./util.js";

export class LineChart {
  // opts: {xLabel, yLabel, yZero (include 0 in y range), empty (text when no data)}
  constructor(canvas, opts = {}) {
    this.canvas = canvas;
    this.opts = Object.assign({ xLabel: "", yLabel: "", yZero: true, empty: "waiting for data", unit: "" }, opts);
    this.series = [];
    this.pending = false;
    new ResizeObserver(() => this.requestDraw()).observe(canvas);
  }

  // series: [{label, color, xs, ys, width?, dash?}]
  set(series) {
    this.series = series || [];
    this.requestDraw();
  }

  requestDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const fit = fitCanvas(this.canvas);
    if (!fit) return;
    const { ctx, w, h } = fit;
    ctx.clearRect(0, 0, w, h);
    const o = this.opts;
    const live = this.series.filter((s) => s.xs && s.ys && s.xs.length && s.ys.some(num));

    let xlo = Infinity, xhi = -Infinity, ylo = Infinity, yhi = -Infinity;
    for (const s of live) {
      const n = Math.min(s.xs.length, s.ys.length);
      for (let i = 0; i < n; i++) {
        const x = s.xs[i], y = s.ys[i];
        if (!num(x) || !num(y)) continue;
        if (x < xlo) xlo = x;
        if (x > xhi) xhi = x;
        if (y < ylo) ylo = y;
        if (y > yhi) yhi = y;
      }
    }
    const has = Number.isFinite(xlo) && Number.isFinite(ylo);
    if (!has) { xlo = 0; xhi = 10; ylo = 0; yhi = 1; }
    if (o.yZero) ylo = Math.min(0, ylo);
    if (xhi - xlo < 1e-9) xhi = xlo + 1;

    const fontSm = "10px ui-monospace, Menlo, Consolas, monospace";
    const yt = niceTicks(ylo, yhi + (yhi - ylo) * 0.04, Math.max(2, Math.min(6, Math.floor(h / 45))));
    ctx.font = fontSm;
    const ylabW = Math.max(...yt.ticks.map((v) => ctx.measureText(tickLabel(v, yt.step)).width));
    const legendH = this.legendHeight(ctx, live, w);
    const m = { l: Math.ceil(ylabW) + 14, r: 12, t: legendH + 6, b: 30 };
    const pw = w - m.l - m.r, ph = h - m.t - m.b;
    if (pw < 20 || ph < 20) return;
    const xt = niceTicks(xlo, xhi, Math.max(2, Math.min(8, Math.floor(pw / 70))));
    // x axis fits the data exactly (ticks inside), y axis snaps to nice bounds
    const X = (x) => m.l + ((x - xlo) / (xhi - xlo)) * pw;
    const Y = (y) => m.t + ph - ((y - yt.lo) / (yt.hi - yt.lo)) * ph;

    // grid and ticks
    ctx.lineWidth = 1;
    ctx.strokeStyle = COLORS.grid;
    ctx.fillStyle = COLORS.muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of yt.ticks) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(m.l, y); ctx.lineTo(m.l + pw, y); ctx.stroke();
      if (has) ctx.fillText(tickLabel(v, yt.step), m.l - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const v of xt.ticks) {
      if (v < xlo - 1e-9 || v > xhi + 1e-9) continue;
      const x = Math.round(X(v)) + 0.5;
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath(); ctx.moveTo(x, m.t); ctx.lineTo(x, m.t + ph); ctx.stroke();
      ctx.strokeStyle = COLORS.axis;
      ctx.beginPath(); ctx.moveTo(x, m.t + ph); ctx.lineTo(x, m.t + ph + 4); ctx.stroke();
      if (has) ctx.fillText(tickLabel(v, xt.step), x, m.t + ph + 6);
    }
    // axes
    ctx.strokeStyle = COLORS.axis;
    ctx.beginPath();
    ctx.moveTo(m.l + 0.5, m.t); ctx.lineTo(m.l + 0.5, m.t + ph + 0.5); ctx.lineTo(m.l + pw, m.t + ph + 0.5);
    ctx.stroke();
    // axis labels
    ctx.fillStyle = COLORS.faint;
    ctx.font = "10px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    if (o.xLabel) ctx.fillText(o.xLabel, m.l + pw, h - 1);
    ctx.textAlign = "left";
    if (o.yLabel) ctx.fillText(o.yLabel, 4, h - 1);

    if (!has) {
      ctx.fillStyle = COLORS.faint;
      ctx.font = "12px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(o.empty, m.l + pw / 2, m.t + ph / 2);
      this.drawLegend(ctx, live, w);
      return;
    }

    // lines
    ctx.save();
    ctx.beginPath();
    ctx.rect(m.l, m.t - 2, pw + 2, ph + 4);
    ctx.clip();
    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    for (const s of live) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = s.width || 1.6;
      ctx.setLineDash(s.dash || []);
      ctx.beginPath();
      let pen = false, lastX = null, lastY = null;
      const n = Math.min(s.xs.length, s.ys.length);
      for (let i = 0; i < n; i++) {
        const x = s.xs[i], y = s.ys[i];
        if (!num(x) || !num(y)) { pen = false; continue; }
        const px = X(x), py = Y(y);
        if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        pen = true; lastX = px; lastY = py;
      }
      ctx.stroke();
      ctx.setLineDash([]);
      if (lastX !== null) {
        ctx.fillStyle = s.color;
        ctx.beginPath(); ctx.arc(lastX, lastY, 2.6, 0, Math.PI * 2); ctx.fill();
      }
    }
    ctx.restore();
    this.drawLegend(ctx, live, w);
  }

  legendItems(live) {
    return live.map((s) => {
      let last = null;
      for (let i = Math.min(s.xs.length, s.ys.length) - 1; i >= 0; i--) if (num(s.ys[i])) { last = s.ys[i]; break; }
      const d = this.opts.digits ?? 1;
      return { color: s.color, dash: s.dash, text: s.label + (last !== null ? `  ${last.toFixed(d)}${this.opts.unit}` : "") };
    });
  }

  layoutLegend(ctx, live, w) {
    ctx.font = "11px system-ui, sans-serif";
    const items = this.legendItems(live);
    let x = 10, y = 4;
    const rows = [];
    for (const it of items) {
      const iw = 20 + ctx.measureText(it.text).width + 14;
      if (x + iw > w - 6 && x > 10) { x = 10; y += 15; }
      rows.push({ ...it, x, y });
      x += iw;
    }
    return { rows, height: items.length ? y + 14 : 8 };
  }

  legendHeight(ctx, live, w) {
    return this.layoutLegend(ctx, live, w).height;
  }

  drawLegend(ctx, live, w) {
    const { rows } = this.layoutLegend(ctx, live, w);
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    for (const r of rows) {
      ctx.strokeStyle = r.color;
      ctx.lineWidth = 2;
      ctx.setLineDash(r.dash || []);
      ctx.beginPath(); ctx.moveTo(r.x, r.y + 6); ctx.lineTo(r.x + 14, r.y + 6); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = COLORS.text;
      ctx.fillText(r.text, r.x + 19, r.y + 6.5);
    }
  }
}
