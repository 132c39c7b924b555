// Tiers graph (SVG): one column per tier, a box per node, an edge from each node to its parent
// coloured and sized by the link's load; the plan box and the list of plan switches beside it.
import { el, svgEl, fmt, num, fmtBytesRate, utilColor, UTIL_GRADIENT } from "./util.js";

const FULL_H = 46, FULL_GAP = 10, COMPACT_H = 15, COMPACT_GAP = 3, TOP = 36, BOTTOM = 8;

// squeeze a text into the box when it would overflow (estimated from the monospace advance)
function setFit(t, text, maxW, px) {
  if (t.textContent !== text) t.textContent = text;
  if (text.length * px * 0.61 > maxW) {
    t.setAttribute("textLength", maxW);
    t.setAttribute("lengthAdjust", "spacingAndGlyphs");
  } else if (t.hasAttribute("textLength")) {
    t.removeAttribute("textLength");
  }
}

export class TiersView {
  constructor({ svg, wrap, planBox, switchList, legend }) {
    Object.assign(this, { svg, wrap, planBox, switchList, legend });
    this.tiers = null;
    this.pipeline = null;
    this.switchSig = "";
    this.lastW = 0; this.lastH = 0;
    new ResizeObserver(() => {
      const w = this.wrap.clientWidth, h = this.wrap.clientHeight;
      if (Math.abs(w - this.lastW) > 1 || Math.abs(h - this.lastH) > 1) this.layout();
    }).observe(this.wrap);
    legend.replaceChildren();
    const lg = el("span", "lg util-legend");
    const grad = el("i", "util-grad");
    grad.style.background = UTIL_GRADIENT;
    lg.append(el("span", null, "link load 0%"), grad, el("span", null, "100%"));
    const busy = el("span", "lg muted", "queue ≥ 3");
    busy.prepend(el("i", "sw busy-sw"));
    legend.append(lg, el("span", "lg muted", "width ∝ load · hover for %"), busy);
  }

  setStatic(tiers) {
    this.tiers = tiers && typeof tiers === "object" ? tiers : { names: [], nodes: [], links: [] };
    this.switchSig = "";
    this.layout();
    this.renderPlan(null);
    this.renderSwitches([]);
  }

  // column and order of every node; positions depend on the wrap's size
  layout() {
    this.lastW = this.wrap.clientWidth;
    this.lastH = this.wrap.clientHeight;
    const svg = this.svg;
    svg.replaceChildren();
    this.nodeEls = new Map();
    this.edgeEls = [];
    if (!this.tiers) return;
    const names = [...(this.tiers.names || [])];
    const nodes = (this.tiers.nodes || []).filter((n) => n && n.id !== undefined);
    for (const n of nodes) if (!names.includes(n.tier)) names.push(n.tier);
    const byId = new Map(nodes.map((n, i) => [n.id, { ...n, i, children: [] }]));
    for (const n of byId.values()) if (n.parent !== null && byId.has(n.parent)) byId.get(n.parent).children.push(n);
    const cols = names.map((name) => [...byId.values()].filter((n) => n.tier === name));
    // order: roots as given, then each column by its parents' rank (keeps edges from crossing)
    const rank = new Map();
    for (let c = cols.length - 1; c >= 0; c--) {
      cols[c].sort((a, b) => {
        const ra = rank.has(a.parent) ? rank.get(a.parent) : -1, rb = rank.has(b.parent) ? rank.get(b.parent) : -1;
        return ra - rb || a.i - b.i;
      });
      cols[c].forEach((n, k) => rank.set(n.id, (k + 0.5) / cols[c].length));
    }
    const W = Math.max(300, this.lastW), H = Math.max(160, this.lastH);
    const avail = H - TOP - BOTTOM;
    const sizes = cols.map((col) => {
      const compact = col.length * (FULL_H + FULL_GAP) > avail;
      return { compact, h: compact ? COMPACT_H : FULL_H, gap: compact ? COMPACT_GAP : FULL_GAP };
    });
    const need = Math.max(0, ...cols.map((col, c) => col.length * (sizes[c].h + sizes[c].gap)));
    const total = Math.max(H, TOP + need + BOTTOM);
    const inner = total - TOP - BOTTOM;
    const ncol = Math.max(1, cols.length);
    const padX = 10, colW = (W - 2 * padX) / ncol;
    const boxW = Math.max(80, Math.min(200, colW - Math.max(34, Math.min(70, colW * 0.2))));
    svg.setAttribute("width", W);
    svg.setAttribute("height", total);
    svg.setAttribute("viewBox", `0 0 ${W} ${total}`);

    // y: first column evenly spaced; later columns at the mean of their children, then de-overlapped
    cols.forEach((col, c) => {
      const { h, gap } = sizes[c];
      const step = h + gap;
      const start = TOP + (inner - col.length * step) / 2 + step / 2;
      col.forEach((n, k) => {
        const kids = n.children.filter((ch) => ch.y !== undefined);
        n.slot = start + k * step;
        n.y = kids.length ? kids.reduce((a, ch) => a + ch.y, 0) / kids.length : n.slot;
        n.x = padX + colW * (c + 0.5);
        n.w = boxW; n.h = h; n.col = c; n.compact = sizes[c].compact;
      });
      // a column that fits the visible height while another overflows: squeeze it into view
      if (total > H && col.length * step <= avail) {
        const k = (avail - step) / Math.max(1, inner - step);
        col.forEach((n) => (n.y = TOP + step / 2 + (n.y - TOP - step / 2) * k));
      }
      col.sort((a, b) => a.y - b.y);
      for (let k = 1; k < col.length; k++) col[k].y = Math.max(col[k].y, col[k - 1].y + step);
      const bottom = total > H && col.length * step <= avail ? H - BOTTOM : total - BOTTOM;
      const over = col.length ? col[col.length - 1].y + h / 2 - bottom : 0;
      if (over > 0) col.forEach((n) => (n.y -= over));
      for (let k = 0; k < col.length; k++) col[k].y = Math.max(col[k].y, TOP + h / 2 + k * step);
    });

    // column titles
    const gTitles = svgEl("g");
    this.colOps = new Map();
    names.forEach((name, c) => {
      const x = padX + colW * (c + 0.5);
      gTitles.appendChild(svgEl("text", { x, y: 15, "text-anchor": "middle", class: "col-title" }, `${name} (${cols[c].length})`));
      const ops = svgEl("text", { x, y: 28, "text-anchor": "middle", class: "col-ops" }, "");
      gTitles.appendChild(ops);
      this.colOps.set(name, ops);
    });

    // edges below nodes
    const gEdges = svgEl("g");
    const gLabels = svgEl("g");
    const showLabels = byId.size <= 40;
    for (const n of byId.values()) {
      const p = byId.get(n.parent);
      if (!p) continue;
      const x1 = n.x + n.w / 2, y1 = n.y, x2 = p.x - p.w / 2, y2 = p.y;
      const dx = Math.max(20, (x2 - x1) / 2);
      const path = svgEl("path", {
        d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`,
        class: "edge", stroke: utilColor(null), "stroke-width": 1.5, "stroke-opacity": 0.85,
      });
      const title = svgEl("title", {}, `${n.id} → ${p.id}`);
      path.appendChild(title);
      gEdges.appendChild(path);
      let label = null;
      if (showLabels && !n.compact) {
        label = svgEl("text", { x: x1 + 3, y: y1 + (y2 > y1 ? -4 : 11), class: "edge-label" }, "");
        gLabels.appendChild(label);
      }
      this.edgeEls.push({ from: n, to: p, path, title, label });
    }

    const gNodes = svgEl("g");
    for (const n of byId.values()) {
      const g = svgEl("g", { class: `node t${Math.min(n.col, 2)}${n.compact ? " compact" : ""}`, transform: `translate(${n.x - n.w / 2},${n.y - n.h / 2})` });
      g.dataset.node = n.id;
      g.appendChild(svgEl("rect", { width: n.w, height: n.h, rx: 4 }));
      const title = svgEl("title", {}, n.id);
      g.appendChild(title);
      const refs = { g, title, n };
      if (n.compact) {
        const idt = svgEl("text", { x: 5, y: n.h / 2 + 3.3, class: "nid" });
        setFit(idt, String(n.id), n.w * 0.55, 9.5);
        g.appendChild(idt);
        refs.m1 = svgEl("text", { x: n.w - 5, y: n.h / 2 + 3.3, "text-anchor": "end", class: "nm" }, "");
        g.appendChild(refs.m1);
      } else {
        const idt = svgEl("text", { x: 7, y: 14, class: "nid" });
        setFit(idt, String(n.id), n.w - 12, 10.5);
        g.appendChild(idt);
        refs.m1 = svgEl("text", { x: 7, y: 27, class: "nm" }, "compute –");
        refs.m2 = svgEl("text", { x: 7, y: 39, class: "nm" }, "queue –");
        g.append(refs.m1, refs.m2);
      }
      gNodes.appendChild(g);
      this.nodeEls.set(n.id, refs);
    }
    svg.append(gTitles, gEdges, gLabels, gNodes);
    this.update(this.pipeline);
  }

  staticCapacity(from, to) {
    const links = this.tiers?.links || [];
    const l = links.find((k) => k && k.name === `${from.tier}->${to.tier}`);
    return l && num(l.capacity_bytes_s) ? l.capacity_bytes_s : null;
  }

  update(pipeline) {
    this.pipeline = pipeline || null;
    const p = this.pipeline || {};
    const nodes = p.nodes || {};
    for (const [id, r] of this.nodeEls || []) {
      const m = nodes[id];
      const c = m ? m.compute_ms : null, q = m ? m.queue_ms : null, d = m ? m.queue_depth : null;
      if (r.n.compact) {
        setFit(r.m1, m ? `${fmt(c)} ms · q${num(d) ? d : "–"}` : "", r.n.w * 0.42, 9);
      } else {
        setFit(r.m1, `compute ${fmt(c)} ms`, r.n.w - 12, 10);
        setFit(r.m2, `queue ${fmt(q)} ms · depth ${num(d) ? d : "–"}`, r.n.w - 12, 10);
      }
      r.g.classList.toggle("busy", num(d) && d >= 3);
      r.title.textContent = `${id} (${r.n.tier})` + (m
        ? `\ncompute ${fmt(c, 2)} ms\nqueue ${fmt(q, 2)} ms, depth ${num(d) ? d : "–"}\nframes ${num(m.frames) ? m.frames : "–"}`
        : "");
    }
    const links = p.links || {};
    for (const e of this.edgeEls || []) {
      const l = links[e.from.id];
      const cap = l && num(l.capacity_bytes_s) ? l.capacity_bytes_s : this.staticCapacity(e.from, e.to);
      const bytes = l && num(l.bytes_s) ? l.bytes_s : null;
      const u = bytes !== null && num(cap) && cap > 0 ? bytes / cap : null;
      e.path.setAttribute("stroke", utilColor(u));
      e.path.setAttribute("stroke-width", (1.2 + 5 * Math.min(1, Math.max(0, u ?? 0)) ** 0.5).toFixed(2));
      const pct = u === null ? "–" : (u * 100 < 10 ? (u * 100).toFixed(1) : (u * 100).toFixed(0));
      e.title.textContent = `${e.from.id} → ${e.to.id}: ${fmtBytesRate(bytes)} of ${fmtBytesRate(cap)} (${pct}%)`;
      e.path.dataset.util = u === null ? "" : u.toFixed(4);
      if (e.label) e.label.textContent = u === null ? "" : `${pct}%`;
    }
    const plan = p.plan || null;
    for (const [name, t] of this.colOps || []) {
      const ops = plan && plan.ops ? plan.ops[name] : undefined;
      t.textContent = num(ops) ? `${ops} ops` : "";
    }
    this.renderPlan(plan);
    this.renderSwitches(Array.isArray(p.switches) ? p.switches : []);
  }

  renderPlan(plan) {
    const sig = JSON.stringify(plan);
    if (sig === this.planSig) return;
    this.planSig = sig;
    const box = this.planBox;
    box.replaceChildren();
    if (!plan) { box.appendChild(el("div", "muted", "no plan yet")); return; }
    const head = el("div", "plan-title");
    head.append(el("span", "side-head", "Plan"), el("b", null, plan.label ?? `v${plan.version ?? "?"}`));
    if (num(plan.version)) head.appendChild(el("span", "muted small", `version ${plan.version}`));
    box.appendChild(head);
    const ops = plan.ops || {};
    if (Object.keys(ops).length) {
      const row = el("div", "plan-row");
      row.appendChild(el("span", "row-label", "ops"));
      const names = [...(this.tiers?.names || [])];
      for (const k of Object.keys(ops)) if (!names.includes(k)) names.push(k);
      for (const name of names) {
        if (!(name in ops)) continue;
        const chip = el("span", "chip", `${name} `);
        chip.title = `${ops[name]} operators on the ${name} tier`;
        chip.appendChild(el("b", null, String(ops[name])));
        row.appendChild(chip);
      }
      box.appendChild(row);
    }
    const codecs = Array.isArray(plan.codecs) ? plan.codecs : [];
    if (codecs.length) {
      const row = el("div", "plan-row");
      row.appendChild(el("span", "row-label", "codecs"));
      const links = this.tiers?.links || [];
      const names = this.tiers?.names || [];
      codecs.forEach((codec, i) => {
        const name = links[i]?.name ?? (names[i + 1] ? `${names[i]}->${names[i + 1]}` : `link ${i}`);
        const chip = el("span", "chip", `${String(name).replace("->", "→")} `);
        chip.appendChild(el("b", null, String(codec)));
        row.appendChild(chip);
      });
      box.appendChild(row);
    }
  }

  renderSwitches(switches) {
    const sig = switches.length + ":" + JSON.stringify(switches[switches.length - 1] ?? null);
    if (sig === this.switchSig) return;
    const fresh = this.switchSig !== "";
    const before = this.switchCount || 0;
    this.switchSig = sig;
    this.switchCount = switches.length;
    const list = this.switchList;
    list.replaceChildren();
    if (!switches.length) { list.appendChild(el("li", "muted", "none yet")); return; }
    switches.slice().reverse().forEach((s, k) => {
      const li = el("li", fresh && k < switches.length - before ? "fresh" : null);
      li.append(el("span", "sw-at", `${fmt(s?.at_s)} s`), el("span", "sw-v", `→ v${s?.version ?? "?"}`),
        document.createTextNode(s?.reason ?? ""));
      list.appendChild(li);
    });
  }
}
