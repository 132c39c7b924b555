// Camera tiles: the grey frame each camera sent (upscaled crisply) and, per lane, the queue
// the pipeline estimated next to the simulator's truth.
import { el, num } from "./util.js";

function errClass(est, truth) {
  if (!num(est) || !num(truth)) return "en";
  const e = Math.abs(est - truth);
  return e < 0.5 ? "e0" : e < 1.5 ? "e1" : "e2";
}

function decodeBase64(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class CameraGrid {
  constructor(container) {
    this.container = container;
    this.tiles = new Map();
    // frames of tiles scrolled out of view are kept and drawn when the tile shows again
    this.observer = new IntersectionObserver((entries) => {
      for (const en of entries) {
        const t = this.tiles.get(Number(en.target.dataset.index));
        if (!t) continue;
        t.visible = en.isIntersecting;
        if (t.visible && t.pending) {
          const f = t.pending;
          t.pending = null;
          this.drawFrame(t, f);
        }
      }
    }, { root: container, rootMargin: "200px" });
  }

  setStatic(cameras) {
    this.observer.disconnect();
    this.container.replaceChildren();
    this.tiles.clear();
    for (const cam of cameras || []) {
      const tile = el("div", "camera-tile");
      tile.dataset.index = String(cam.index);
      if (cam.junction !== undefined && cam.junction !== null) tile.dataset.junction = cam.junction;
      tile.title = `camera ${cam.index}: ${cam.name ?? ""}` +
        (cam.junction ? ` · junction ${cam.junction}` : "") + (cam.node ? ` · ${cam.node}` : "");
      const head = el("div", "cam-head");
      head.append(el("span", "cam-name", cam.name ?? `camera ${cam.index}`), el("span", "cam-node", cam.node ?? `#${cam.index}`));
      const box = el("div", "frame-box noframe");
      const canvas = el("canvas", "frame");
      canvas.width = 128;
      canvas.height = 32;
      box.appendChild(canvas);
      const lanes = el("div", "lanes");
      tile.append(head, box, lanes);
      this.container.appendChild(tile);
      const t = { tile, box, canvas, ctx: null, lanes, rows: [], lastData: null, image: null, visible: true, pending: null };
      this.ensureRows(t, num(cam.lanes) ? cam.lanes : 0);
      this.tiles.set(Number(cam.index), t);
      this.observer.observe(tile);
    }
  }

  ensureRows(t, n) {
    while (t.rows.length < n) {
      const i = t.rows.length;
      const row = el("div", "lane");
      const ln = el("span", "ln", `L${i + 1}`);
      const est = el("span", "est en", "est –");
      const tru = el("span", "tru", "/ true –");
      const right = el("span");
      right.append(est, document.createTextNode(" "), tru);
      row.append(ln, right);
      t.lanes.appendChild(row);
      t.rows.push({ row, est, tru });
    }
  }

  update(cams) {
    if (!Array.isArray(cams)) return;
    for (const cam of cams) {
      if (!cam) continue;
      const t = this.tiles.get(Number(cam.index));
      if (!t) continue;
      this.drawFrame(t, cam.frame);
      const est = Array.isArray(cam.est) ? cam.est : [];
      const truth = Array.isArray(cam.truth) ? cam.truth : [];
      this.ensureRows(t, Math.max(est.length, truth.length));
      t.rows.forEach((r, i) => {
        const e = est[i], tr = truth[i];
        r.est.textContent = `est ${num(e) ? e.toFixed(1) : "–"}`;
        r.est.className = `est ${errClass(e, tr)}`;
        r.tru.textContent = `/ true ${num(tr) ? (Number.isInteger(tr) ? tr : tr.toFixed(1)) : "–"}`;
      });
    }
  }

  drawFrame(t, frame) {
    if (!frame || !num(frame.w) || !num(frame.h) || typeof frame.data !== "string" || frame.w < 1 || frame.h < 1) {
      return; // null: no new frame; keep the last one (the tile says "no frame" until the first)
    }
    if (frame.data === t.lastData) return;
    if (!t.visible) { t.pending = frame; return; }
    let px;
    try {
      px = decodeBase64(frame.data);
    } catch {
      return;
    }
    const w = frame.w | 0, h = frame.h | 0;
    if (px.length < w * h) return;
    if (t.canvas.width !== w || t.canvas.height !== h || !t.image) {
      t.canvas.width = w;
      t.canvas.height = h;
      t.ctx = t.canvas.getContext("2d");
      t.image = t.ctx.createImageData(w, h);
    }
    const d = t.image.data;
    for (let i = 0, j = 0; i < w * h; i++, j += 4) {
      const g = px[i];
      d[j] = g; d[j + 1] = g; d[j + 2] = g; d[j + 3] = 255;
    }
    t.ctx.putImageData(t.image, 0, 0);
    t.lastData = frame.data;
    t.box.classList.remove("noframe");
  }
}
