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

const LABEL_ROW = 14; // height of one row of line labels above the plot
const AXIS_TITLE = 18; // the edge strip a rotated axis title's glyphs take (its baseline is 12 px in)

/**
 * Where each legend entry goes: left to right from `x0`, on a new row when the next would pass `x1`. Entries are
 * the series named in the legend, then the labelled horizontal lines. Returns {items: [{x, row, name, kind,
 * color}], rows}.
 */
export function legendLayout(opts, x0, x1) {
  const entries = [
    ...(opts.series ?? []).filter((s) => s.legend !== false).map((s) => ({ name: s.name, kind: "series", color: s.color, width: 24 + textWidth(s.name) })),
    ...(opts.hlines ?? []).filter((h) => h.label).map((h) => ({ name: h.label, kind: "hline", width: 26 + textWidth(h.label) })),
  ];
  const items = [];
  let x = x0;
  let row = 0;
  for (const entry of entries) {
    if (x > x0 && x + entry.width - 10 > x1) {
      row += 1;
      x = x0;
    }
    items.push({ ...entry, x, row });
    x += entry.width;
  }
  return { items, rows: items.length ? row + 1 : 1 };
}

/**
 * The chart's margins: the left (and right) one fits the widest tick label and the axis title beside it, and
 * the top one holds the legend's rows (at `width`) and, in rows of their own, the labels of vertical lines (never
 * over the curves).
 */
export function chartMargins(opts, width = 480) {
  const widest = (ticks) => Math.max(0, ...ticks.map((t) => textWidth(formatNumber(t))));
  const [y0, y1] = opts.y.domain;
  // Tick labels end 6 px from the axis; the rotated title's glyphs span AXIS_TITLE px at the edge.
  const left = Math.max(52, Math.ceil(widest(niceTicks(y0, y1, 4)) + 6 + AXIS_TITLE));
  const right = opts.y2 ? Math.max(52, Math.ceil(widest(niceTicks(...opts.y2.domain, 4)) + 6 + AXIS_TITLE)) : 14;
  const labelled = (opts.vlines ?? []).filter((v) => v.label);
  const rows = labelled.length ? 1 + Math.max(0, ...labelled.map((v) => v.row ?? 0)) : 0;
  const legendRows = legendLayout(opts, left + 4, width - right).rows;
  return { l: left, r: right, t: 20 + (legendRows - 1 + rows) * LABEL_ROW, b: 36, ...(opts.margin ?? {}) };
}

/**
 * Draw a line chart into an <svg>. opts: {x: {domain, label}, y: {domain, label}, series:
 * [{name, color, points: [{x, y}], dots, dash}], vlines: [{x, label, color, dash, row}], hlines:
 * [{y, label}], bands: [{x0, x1, color, label}], cursor, onPick(x), empty, title}. `title` (else the axes and
 * series) names the chart for screen readers.
 */
export function lineChart(svg, opts) {
  const width = svg.clientWidth || Number(svg.getAttribute("width")) || 480;
  // The plot keeps the height the page gives it: rows of legend and line labels above it make the chart taller.
  if (!svg.dataset.plotHeight && svg.clientHeight) svg.dataset.plotHeight = svg.clientHeight;
  const base = Number(svg.dataset.plotHeight) || Number(svg.getAttribute("height")) || 200;
  const m = chartMargins(opts, width);
  const height = base + m.t - 20;
  if (svg.clientHeight && svg.clientHeight !== height) svg.style.height = `${height}px`;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", opts.title
    ?? `${opts.y.label} over ${opts.x.label}${opts.series.length ? `: ${opts.series.map((s) => s.name).join(", ")}` : ""}`);
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
  // The rotated title's baseline is 12 px from the left edge and its glyphs stay within AXIS_TITLE px of it;
  // chartMargins keeps the tick labels right of that strip.
  el("text", {
    x: 12,
    y: (plot.top + plot.bottom) / 2,
    class: "label axis-title",
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
      x: width - 12, y: cy, class: "label axis-title", "text-anchor": "middle", transform: `rotate(90 ${width - 12} ${cy})`,
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
      // Above the plot, in the label rows of the top margin (never over a curve); right of the line, unless that
      // would run past the plot: then left of it.
      const flip = x + 3 + textWidth(v.label) > plot.right;
      const rows = 1 + Math.max(0, ...(opts.vlines ?? []).filter((u) => u.label).map((u) => u.row ?? 0));
      el("line", { x1: x, x2: x, y1: plot.top - (rows - (v.row ?? 0)) * LABEL_ROW + 2, y2: plot.top, stroke: v.color, "stroke-dasharray": "1 2" }, g);
      el("text", {
        x: flip ? x - 3 : x + 3, y: plot.top - (rows - 1 - (v.row ?? 0)) * LABEL_ROW - 3, class: "note", fill: v.color, "text-anchor": flip ? "end" : "start",
      }, g).textContent = v.label;
    }
  }

  const legend = el("g", { class: "legend" }, svg);
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
  }
  // The legend, in rows above the plot; horizontal lines are named there too, not beside the line, where the curves run.
  for (const item of legendLayout(opts, plot.left + 4, plot.right).items) {
    const y = item.row * LABEL_ROW;
    if (item.kind === "series") {
      el("rect", { x: item.x, y: 5 + y, width: 10, height: 3, fill: item.color }, legend);
      el("text", { x: item.x + 14, y: 10 + y, class: "legend-text" }, legend).textContent = item.name;
    } else {
      el("line", { x1: item.x, x2: item.x + 12, y1: 6.5 + y, y2: 6.5 + y, class: "hline", "stroke-dasharray": "4 3" }, legend);
      el("text", { x: item.x + 16, y: 10 + y, class: "legend-text hline-label" }, legend).textContent = item.name;
    }
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
 * rowLabel(r), rowColour(r), colColour(c), onPick(r, c), title}. Returns {setCursor(col), setRow(row)}.
 */
export function matrixChart(canvas, opts) {
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", opts.title ?? `${opts.yLabel} × ${opts.xLabel} matrix: ${opts.rows} × ${opts.cols}`);
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

/**
 * The labelled ticks of a colour bar `width` px wide over `range`: its two ends and the round values between them
 * whose labels keep clear of the ends' and of each other. Returns [{value, x, text, align}].
 */
export function colourBarTicks(range, width) {
  if (!range || !Number.isFinite(range.lo) || !Number.isFinite(range.hi)) return [];
  const span = range.hi - range.lo;
  const at = (v) => 1 + (span > 0 ? ((v - range.lo) / span) * (width - 2) : 0);
  const ends = [
    { value: range.lo, x: 1, text: formatNumber(range.lo), align: "left" },
    { value: range.hi, x: width - 1, text: formatNumber(range.hi), align: "right" },
  ];
  if (!(span > 0)) return [ends[0]];
  const gap = 8;
  const taken = [[0, textWidth(ends[0].text)], [width - textWidth(ends[1].text), width]];
  const inner = [];
  for (const value of niceTicks(range.lo, range.hi, Math.max(1, Math.floor(width / 50)))) {
    const x = at(value);
    const text = formatNumber(value);
    const box = [x - textWidth(text) / 2 - gap, x + textWidth(text) / 2 + gap];
    if (taken.some(([a, b]) => box[0] < b && a < box[1])) continue;
    taken.push(box);
    inner.push({ value, x, text, align: "center" });
  }
  return [ends[0], ...inner, ends[1]];
}

/** A horizontal colour bar with labelled ticks over its range and its title under them, for a heatmap's legend. */
export function colourBar(canvas, range, cmap = "inferno", label = "") {
  const width = canvas.clientWidth || 200;
  const height = canvas.clientHeight || 44;
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
  const ticks = colourBarTicks(range, width);
  for (const tick of ticks) {
    ctx.fillRect(Math.round(tick.x) - (tick.align === "right" ? 1 : 0), 12, 1, 3);
    ctx.textAlign = tick.align;
    ctx.fillText(tick.text, tick.x, 26);
  }
  ctx.textAlign = "center";
  ctx.fillText(label, width / 2, 40);
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", range
    ? `colour scale of ${label || "the values"}: ${cmap}, from ${formatNumber(range.lo)} to ${formatNumber(range.hi)}`
    : `colour scale of ${label || "the values"}: no data yet`);
  canvas.dataset.ticks = ticks.map((t) => t.value).join(",");
}
