// Small charts with labelled axes: SVG line charts (curves over steps) and canvas matrices
// (layer × step). Each returns a handle whose setCursor(step) moves only the step marker, so
// scrubbing does not redraw the chart.

import { colourMap, lutIndex } from "./colour.js";

const SVG = "http://www.w3.org/2000/svg";

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const ticks = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

/** Integer ticks for step axes (no fractional steps). */
export function integerTicks(lo, hi, count = 8) {
  return niceTicks(lo, hi, count).filter((v) => Number.isInteger(v));
}

export function formatNumber(v) {
  if (v === 0) return "0";
  const abs = Math.abs(v);
  if (abs >= 100000 || abs < 0.001) return v.toExponential(1);
  return String(Number(v.toPrecision(3)));
}

/** Width of `text` at the charts' 12 px font, estimated (SVG text is not measured before layout). */
export function textWidth(text) {
  return String(text).length * 6.8;
}

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined && value !== null) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

/**
 * Draw a line chart into an <svg>. opts: {x: {domain, label}, y: {domain, label}, series:
 * [{name, color, points: [{x, y}], dots, dash}], vlines: [{x, label, color, dash}], hlines:
 * [{y, label}], bands: [{x0, x1, color, label}], cursor, onPick(x), empty}.
 */
export function lineChart(svg, opts) {
  const width = svg.clientWidth || Number(svg.getAttribute("width")) || 480;
  const height = svg.clientHeight || Number(svg.getAttribute("height")) || 200;
  const m = { l: 52, r: opts.y2 ? 52 : 14, t: 20, b: 36, ...(opts.margin ?? {}) };
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const [x0, x1] = opts.x.domain;
  const [y0, y1] = opts.y.domain;
  const sx = (x) => m.l + ((x - x0) / (x1 - x0 || 1)) * (width - m.l - m.r);
  const sy = (y) => height - m.b - ((y - y0) / (y1 - y0 || 1)) * (height - m.t - m.b);
  const plot = { left: m.l, right: width - m.r, top: m.t, bottom: height - m.b };

  for (const band of opts.bands ?? []) {
    const bx0 = sx(band.x0);
    const g = el("g", { class: "band" }, svg);
    el("rect", { x: bx0, y: plot.bottom + 2, width: Math.max(1, sx(band.x1) - bx0), height: 6, fill: band.color }, g);
    if (band.label) el("title", {}, g).textContent = band.label;
  }

  const axes = el("g", { class: "axes" }, svg);
  for (const t of opts.x.ticks ?? integerTicks(x0, x1)) {
    el("line", { x1: sx(t), x2: sx(t), y1: plot.top, y2: plot.bottom, class: "grid" }, axes);
    el("text", { x: sx(t), y: plot.bottom + 20, class: "tick", "text-anchor": "middle" }, axes).textContent = t;
  }
  for (const t of niceTicks(y0, y1, 4)) {
    el("line", { x1: plot.left, x2: plot.right, y1: sy(t), y2: sy(t), class: "grid" }, axes);
    el("text", { x: plot.left - 6, y: sy(t) + 4, class: "tick", "text-anchor": "end" }, axes).textContent =
      formatNumber(t);
  }
  el("line", { x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom, class: "axis" }, axes);
  el("line", { x1: plot.left, x2: plot.left, y1: plot.top, y2: plot.bottom, class: "axis" }, axes);
  el("text", { x: (plot.left + plot.right) / 2, y: height - 2, class: "label", "text-anchor": "middle" }, axes)
    .textContent = opts.x.label;
  el("text", {
    x: 12,
    y: (plot.top + plot.bottom) / 2,
    class: "label",
    "text-anchor": "middle",
    transform: `rotate(-90 12 ${(plot.top + plot.bottom) / 2})`,
  }, axes).textContent = opts.y.label;

  let sy2 = null;
  if (opts.y2) {
    const [a, b] = opts.y2.domain;
    sy2 = (y) => height - m.b - ((y - a) / (b - a || 1)) * (height - m.t - m.b);
    for (const t of niceTicks(a, b, 4)) {
      el("text", { x: plot.right + 6, y: sy2(t) + 4, class: "tick" }, axes).textContent = formatNumber(t);
    }
    el("line", { x1: plot.right, x2: plot.right, y1: plot.top, y2: plot.bottom, class: "axis" }, axes);
    const cy = (plot.top + plot.bottom) / 2;
    el("text", {
      // 12 px from the edge: the rotated text's glyphs extend ~8 px to the right of its baseline.
      x: width - 12, y: cy, class: "label", "text-anchor": "middle", transform: `rotate(90 ${width - 12} ${cy})`,
    }, axes).textContent = opts.y2.label;
  }

  for (const h of opts.hlines ?? []) {
    const y = sy(h.y);
    el("line", { x1: plot.left, x2: plot.right, y1: y, y2: y, class: "hline", "stroke-dasharray": "4 3" }, svg);
  }
  for (const v of opts.vlines ?? []) {
    const x = sx(v.x);
    const g = el("g", { class: `vline ${v.cls ?? ""}`, "data-step": v.x }, svg);
    el("line", { x1: x, x2: x, y1: plot.top, y2: plot.bottom, stroke: v.color, "stroke-dasharray": v.dash ?? "3 3" }, g);
    if (v.label) {
      // Right of the line, unless that would run past the plot: then left of it.
      const flip = x + 3 + textWidth(v.label) > plot.right;
      el("text", {
        x: flip ? x - 3 : x + 3, y: plot.top + 12 + (v.row ?? 0) * 14, class: "note", fill: v.color, "text-anchor": flip ? "end" : "start",
      }, g).textContent = v.label;
    }
  }

  const legend = el("g", { class: "legend" }, svg);
  let lx = plot.left + 4;
  for (const s of opts.series) {
    const scale = s.axis === 2 && sy2 ? sy2 : sy;
    const pts = s.points.filter((p) => Number.isFinite(p.y));
    if (pts.length) {
      const d = pts.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${scale(p.y).toFixed(1)}`).join("");
      el("path", { d, class: "series", stroke: s.color, "stroke-dasharray": s.dash, "data-series": s.name }, svg);
    }
    if (s.dots !== false) {
      const g = el("g", { class: "points", "data-series": s.name }, svg);
      for (const p of pts) {
        const dot = el("circle", {
          cx: sx(p.x), cy: scale(p.y), r: 2.6, fill: s.color, "data-step": p.x, "data-value": p.y,
        }, g);
        el("title", {}, dot).textContent = `${s.name} · step ${p.x}: ${formatNumber(p.y)}`;
      }
    }
    if (s.legend === false) continue;
    el("rect", { x: lx, y: 5, width: 10, height: 3, fill: s.color }, legend);
    const text = el("text", { x: lx + 14, y: 10, class: "legend-text" }, legend);
    text.textContent = s.name;
    lx += 24 + textWidth(s.name);
  }
  // Horizontal lines are named in the legend, not beside the line, where the curves run.
  for (const h of opts.hlines ?? []) {
    if (!h.label) continue;
    el("line", { x1: lx, x2: lx + 12, y1: 6.5, y2: 6.5, class: "hline", "stroke-dasharray": "4 3" }, legend);
    el("text", { x: lx + 16, y: 10, class: "legend-text hline-label" }, legend).textContent = h.label;
    lx += 26 + textWidth(h.label);
  }

  if (opts.empty) {
    el("text", { x: (plot.left + plot.right) / 2, y: (plot.top + plot.bottom) / 2, class: "empty", "text-anchor": "middle" }, svg)
      .textContent = opts.empty;
  }

  const cursor = el("line", { class: "cursor", y1: plot.top, y2: plot.bottom, visibility: "hidden" }, svg);
  const setCursor = (x) => {
    if (x === null || x === undefined || !Number.isFinite(x)) {
      cursor.setAttribute("visibility", "hidden");
      return;
    }
    cursor.setAttribute("x1", sx(x));
    cursor.setAttribute("x2", sx(x));
    cursor.setAttribute("visibility", "visible");
    svg.dataset.cursor = x;
  };
  setCursor(opts.cursor);

  if (opts.onPick) {
    svg.onclick = (event) => {
      const box = svg.getBoundingClientRect();
      const px = ((event.clientX - box.left) / box.width) * width;
      if (px < plot.left - 4 || px > plot.right + 4) return;
      opts.onPick(x0 + ((px - plot.left) / (plot.right - plot.left)) * (x1 - x0));
    };
  }
  return { setCursor, sx, sy };
}

/**
 * Draw a matrix (rows × cols of values) into a <canvas> with axes. opts: {rows, cols,
 * value(r, c) (NaN: no data), range {lo, hi}, cmap, xLabel, yLabel, xTicks: [{index, label}],
 * rowLabel(r), rowColour(r), colColour(c), onPick(r, c)}. Returns {setCursor(col), setRow(row)}.
 */
export function matrixChart(canvas, opts) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 480;
  const height = canvas.clientHeight || 220;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext("2d");
  const m = { l: 58, r: 12, t: 8, b: 34 };
  const cw = (width - m.l - m.r) / Math.max(1, opts.cols);
  const ch = (height - m.t - m.b) / Math.max(1, opts.rows);
  const lut = colourMap(opts.cmap ?? "inferno");
  const cells = () => {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = "#11151c";
    ctx.fillRect(m.l, m.t, width - m.l - m.r, height - m.t - m.b);
    for (let r = 0; r < opts.rows; r++) {
      for (let c = 0; c < opts.cols; c++) {
        const v = opts.value(r, c);
        if (!Number.isFinite(v)) continue;
        const i = lutIndex(v, opts.range.lo, opts.range.hi) * 3;
        ctx.fillStyle = `rgb(${lut[i]},${lut[i + 1]},${lut[i + 2]})`;
        // Rows run bottom-up: layer 0 at the bottom, like a depth axis.
        ctx.fillRect(m.l + c * cw, height - m.b - (r + 1) * ch, Math.ceil(cw), Math.ceil(ch));
      }
    }
    if (opts.colColour) {
      // A thin band under the columns, e.g. which expert ran at each step.
      for (let c = 0; c < opts.cols; c++) {
        ctx.fillStyle = opts.colColour(c);
        ctx.fillRect(m.l + c * cw, height - m.b + 1, Math.ceil(cw), 3);
      }
    }
    ctx.fillStyle = "#9aa4b2";
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "center";
    for (const tick of opts.xTicks ?? []) ctx.fillText(tick.label, m.l + (tick.index + 0.5) * cw, height - m.b + 15);
    ctx.fillText(opts.xLabel, m.l + (width - m.l - m.r) / 2, height - 4);
    ctx.textAlign = "right";
    const every = Math.max(1, Math.ceil(12 / ch));
    for (let r = 0; r < opts.rows; r += every) {
      ctx.fillStyle = opts.rowColour?.(r) ?? "#9aa4b2";
      ctx.fillText(opts.rowLabel ? opts.rowLabel(r) : String(r), m.l - 6, height - m.b - (r + 0.5) * ch + 4);
    }
    ctx.save();
    ctx.translate(12, m.t + (height - m.t - m.b) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillStyle = "#9aa4b2";
    ctx.fillText(opts.yLabel, 0, 0);
    ctx.restore();
  };
  let col = null;
  let row = null;
  const overlay = () => {
    cells();
    ctx.strokeStyle = "#e8ecf1";
    ctx.lineWidth = 1.5;
    if (col !== null && col >= 0) ctx.strokeRect(m.l + col * cw + 0.5, m.t, cw - 1, height - m.t - m.b);
    if (row !== null && row >= 0) {
      ctx.strokeStyle = "#5ec8ff";
      ctx.strokeRect(m.l, height - m.b - (row + 1) * ch + 0.5, width - m.l - m.r, ch - 1);
    }
  };
  overlay();
  if (opts.onPick) {
    canvas.onclick = (event) => {
      const box = canvas.getBoundingClientRect();
      const c = Math.floor((event.clientX - box.left - m.l) / cw);
      const r = Math.floor((height - m.b - (event.clientY - box.top)) / ch);
      if (c >= 0 && c < opts.cols && r >= 0 && r < opts.rows) opts.onPick(r, c);
    };
  }
  return {
    setCursor(c) {
      col = c;
      overlay();
    },
    setRow(r) {
      row = r;
      overlay();
    },
  };
}

/** A horizontal colour bar with its range, for a legend next to a heatmap. */
export function colourBar(canvas, range, cmap = "inferno", label = "") {
  const width = canvas.clientWidth || 200;
  const height = canvas.clientHeight || 30;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const lut = colourMap(cmap);
  const barWidth = width - 2;
  for (let x = 0; x < barWidth; x++) {
    const i = Math.round((x / (barWidth - 1)) * 255) * 3;
    ctx.fillStyle = `rgb(${lut[i]},${lut[i + 1]},${lut[i + 2]})`;
    ctx.fillRect(1 + x, 2, 1, 10);
  }
  ctx.fillStyle = "#9aa4b2";
  ctx.font = "12px system-ui, sans-serif";
  if (range) {
    ctx.textAlign = "left";
    ctx.fillText(formatNumber(range.lo), 1, 25);
    ctx.textAlign = "right";
    ctx.fillText(formatNumber(range.hi), width - 1, 25);
  }
  ctx.textAlign = "center";
  ctx.fillText(label, width / 2, 25);
}
