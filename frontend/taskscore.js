// A task-scored trajectory (spec.task): its verdict as a badge, its candidate curve as a chart, each candidate drawn
// over x̂₀ where the measure reads it, and a strip of the candidates' masses across steps. Everything comes from the
// manifest's trajectory entry (task_score, candidates and their regions, computed by the task code); absent, nothing
// is shown. Nothing here measures: the masses, the live flags and the regions are read, not recomputed.

import { lineChart } from "./charts.js";
import { h } from "./dom.js";

const CANDIDATE_COLOURS = ["#5ec8ff", "#ffb454", "#c792ea", "#ff7b72", "#f2cc60", "#79c0ff", "#d2a8ff", "#8b949e"];
const OTHERS_COLOUR = "#8b949e";
const ANSWER_COLOUR = "#7ee787";
const LIVE_COLOUR = "#e6edf3";

/**
 * The text of a task score: "pass · score 0.83 · reason" (or "fail …").
 * @param {{score: number, passed: boolean, reason?: string}} taskScore
 * @returns {string}
 */
export function taskScoreText(taskScore) {
  const verdict = taskScore.passed ? "pass" : "fail";
  const score = Number.isFinite(taskScore.score) ? taskScore.score.toFixed(2) : "–";
  return `${verdict} · score ${score}${taskScore.reason ? ` · ${taskScore.reason}` : ""}`;
}

/**
 * A badge for a trajectory's task score, or null where the trajectory has none.
 * @param {{score: number, passed: boolean, reason?: string} | null | undefined} taskScore
 * @param {string} [prefix] e.g. the trajectory's name
 */
export function taskScoreBadge(taskScore, prefix = "") {
  if (!taskScore) return null;
  return h("span", {
    class: `badge task-score ${taskScore.passed ? "task-pass" : "task-fail"}`,
    dataset: { passed: String(taskScore.passed), score: String(taskScore.score) },
    title: "the task's scorer on the decoded final video",
  }, `${prefix ? `${prefix}: ` : ""}${taskScoreText(taskScore)}`);
}

/** The colour of candidate `j`: the answer green, the others from a fixed cycle (as on the candidate chart). */
export function candidateColour(j, answer) {
  return j === answer ? ANSWER_COLOUR : CANDIDATE_COLOURS[j % CANDIDATE_COLOURS.length];
}

/**
 * The series of a candidate curve: live candidates per step (right axis) and each candidate's mass
 * per step, the answer's solid and named in the legend, the others dashed; `winners` marks each step's winning candidate.
 * @param {{steps: number[], labels: string[], answer: number, masses: number[][], live: number[], winner: (number|null)[]}} candidates
 */
export function candidateSeries(candidates) {
  const { steps, labels, answer, masses, live, winner } = candidates;
  const mass = labels.map((label, j) => ({
    name: j === answer ? `${label} (answer)` : label,
    color: candidateColour(j, answer),
    dash: j === answer ? undefined : "4 2",
    // Only the answer is named in the legend (the others in one entry, each on its dots' tooltips).
    legend: j === answer,
    points: steps.map((s, i) => ({ x: s, y: masses[i]?.[j] ?? NaN })),
  }));
  const liveSeries = { name: "live", color: LIVE_COLOUR, axis: 2, points: steps.map((s, i) => ({ x: s, y: live[i] })) };
  const winners = steps.map((s, i) => ({ step: s, winner: winner[i] ?? null, isAnswer: winner[i] === answer }));
  const maxMass = Math.max(0, ...masses.flat().filter(Number.isFinite));
  const maxLive = Math.max(1, ...live, labels.length);
  return { mass, live: liveSeries, winners, maxMass, maxLive };
}

/**
 * The chance level beside a candidate curve, in words, or null where the manifest has none (runs stored before it
 * was kept). The chance level is the manifest's (`candidates.chance`, computed by the task code): a winner picked at
 * random among the candidates is the answer this often, and a measure blind to the answer does no better.
 * @param {{labels: string[], answer: number, winner: (number|null)[], chance?: number|null}} candidates
 * @returns {string|null}
 */
export function candidateChanceText(candidates) {
  const { chance, labels, answer, winner } = candidates;
  if (!Number.isFinite(chance)) return null;
  const withWinner = winner.filter((w) => w !== null && w !== undefined).length;
  const answerWins = winner.filter((w) => w === answer).length;
  const here = withWinner
    ? `here the winner is the answer at ${answerWins} of the ${withWinner} step(s) with a winner`
    : "here no step has a live winner";
  return `chance ${chance.toFixed(3)} (1 of ${labels.length} candidates): a winner picked at random is the answer `
    + `this often · ${here}`;
}

/**
 * Draw the candidate curve into an <svg>; returns lineChart's handle (setCursor) for the step slider.
 * @param {SVGSVGElement} svg
 * @param {object} candidates the trajectory's manifest `candidates`
 * @param {number} totalSteps the run's denoising steps (the x axis)
 * @param {number|null} cursor the current step
 */
export function candidateChart(svg, candidates, totalSteps, cursor) {
  const series = candidateSeries(candidates);
  const final = series.winners[series.winners.length - 1];
  const vlines = final && final.winner !== null
    ? [{ x: final.step, label: `winner: ${candidates.labels[final.winner]}`, color: final.isAnswer ? ANSWER_COLOUR : "#ff7b72" }]
    : [];
  const others = { name: "other candidates", color: OTHERS_COLOUR, dash: "4 2", dots: false, points: [] };
  return lineChart(svg, {
    x: { domain: [-0.5, Math.max(totalSteps, 1) - 0.5], label: "denoising step" },
    y: { domain: [0, series.maxMass > 0 ? series.maxMass : 1], label: "mass" },
    y2: { domain: [0, series.maxLive], label: "live" },
    series: [...series.mass, ...(candidates.labels.length > 1 ? [others] : []), series.live],
    vlines,
    cursor,
  });
}

const SIDES = [
  { out: [-1, 0], along: [0, 1], edge: (r, c) => [c, r, c + 1, r] }, // top
  { out: [1, 0], along: [0, 1], edge: (r, c) => [c, r + 1, c + 1, r + 1] }, // bottom
  { out: [0, -1], along: [1, 0], edge: (r, c) => [c, r, c, r + 1] }, // left
  { out: [0, 1], along: [1, 0], edge: (r, c) => [c + 1, r, c + 1, r + 1] }, // right
];

/**
 * The outline of a set of grid cells: the cell edges not shared by two of its cells, as segments [x0, y0, x1, y1]
 * in cell units (x = column, y = row; a cell [r, c] spans x c…c+1, y r…r+1), moved `inset` cell units inside
 * (convex corners shorten their edges, concave ones lengthen them, so the moved outline stays closed).
 * @param {number[][]} cells [row, col] pairs
 * @param {number} [inset]
 */
export function regionOutline(cells, inset = 0) {
  const inside = new Set(cells.map(([r, c]) => `${r},${c}`));
  const has = (r, c) => inside.has(`${r},${c}`);
  const segments = [];
  for (const [r, c] of cells) {
    for (const { out, along, edge } of SIDES) {
      if (has(r + out[0], c + out[1])) continue;
      const [x0, y0, x1, y1] = edge(r, c);
      const ends = [[x0, y0], [x1, y1]].map(([x, y], k) => {
        const e = k ? 1 : -1;
        const n = [r + e * along[0], c + e * along[1]];
        const shift = !has(...n) ? -e * inset : has(n[0] + out[0], n[1] + out[1]) ? e * inset : 0;
        return [x - out[1] * inset + shift * along[1], y - out[0] * inset + shift * along[0]];
      });
      segments.push([...ends[0], ...ends[1]]);
    }
  }
  return segments;
}

/**
 * Each candidate at one captured step, as the manifest has it: {index, label, colour, mass, alive, isWinner,
 * isAnswer, cells, anchor}; null when the step was not measured or the run stored no regions.
 * `alive` is null for runs stored before the live flags were kept.
 * @param {object} candidates the trajectory's manifest `candidates`
 * @param {number|null} step a denoising step
 */
export function candidatesAt(candidates, step) {
  const i = candidates?.steps?.indexOf(step) ?? -1;
  const regions = candidates?.regions;
  if (i < 0 || !regions) return null;
  return candidates.labels.map((label, j) => ({
    index: j,
    label,
    colour: candidateColour(j, candidates.answer),
    mass: candidates.masses[i]?.[j] ?? NaN,
    alive: candidates.alive ? Boolean(candidates.alive[i]?.[j]) : null,
    isWinner: candidates.winner[i] === j,
    isAnswer: j === candidates.answer,
    cells: regions.cells[j] ?? [],
    anchor: regions.anchors?.[j] ?? regions.cells[j]?.[0] ?? null,
  }));
}

/**
 * Where the curve settles: the winner of the last step and the first step from which every step's winner is it;
 * null when the last step has no winner.
 * @param {{steps: number[], winner: (number|null)[]}} candidates
 */
export function settledWinner(candidates) {
  const { steps, winner } = candidates;
  const last = winner[winner.length - 1];
  if (last === null || last === undefined) return null;
  let from = winner.length - 1;
  while (from > 0 && winner[from - 1] === last) from -= 1;
  return { winner: last, step: steps[from] };
}

/** One line on the candidates at a step: the live ones and the winner, in words. */
export function candidatesAtText(at, step) {
  if (!at) return `step ${step ?? "–"}: not measured`;
  const live = at.filter((c) => c.alive);
  const winner = at.find((c) => c.isWinner);
  const named = (c) => `${c.label}${c.isAnswer ? " (answer)" : ""} ${formatMass(c.mass)}`;
  const liveText = at.some((c) => c.alive !== null)
    ? `${live.length} live${live.length ? `: ${live.map(named).join(", ")}` : ""}`
    : "live flags not stored";
  return `step ${step}: ${liveText}${winner ? ` · winner ${winner.label}${winner.isAnswer ? " (the answer)" : ""}` : " · no winner"}`;
}

/** A mass as shown: two decimals, or one significant digit below 0.01 (a random model's masses are ~0.003). */
export function formatMass(m) {
  if (!Number.isFinite(m)) return "–";
  return m >= 0.01 || m === 0 ? m.toFixed(2) : m.toPrecision(1);
}

const outlines = new WeakMap(); // a region's cells (the manifest's array) → inset → its outline: scrubbing redraws it

function cachedOutline(cells, inset) {
  if (!outlines.has(cells)) outlines.set(cells, new Map());
  const byInset = outlines.get(cells);
  if (!byInset.has(inset)) byInset.set(inset, regionOutline(cells, inset));
  return byInset.get(inset);
}

/**
 * Draw the candidates of one step over a frame of `width` × `height` px that shows the whole task picture (a grid
 * of `regions.grid` cells a side): each candidate's cells tinted by its mass and outlined in its colour (solid while
 * live, dashed otherwise, thicker with more mass), its mass written at its anchor cell (★ on the winner). Where
 * candidates share cells (the pattern's orientations in one box) each outline is inset a little more, to stay apart.
 * `measured`: whether the frame shown is one the masses were measured in (otherwise everything is drawn faint).
 */
export function drawCandidates(g, at, regions, width, height, measured = true) {
  const n = regions.grid;
  const cw = width / n;
  const ch = height / n;
  const counts = new Map();
  for (const c of at) for (const [r, col] of c.cells) counts.set(`${r},${col}`, (counts.get(`${r},${col}`) ?? 0) + 1);
  const shared = [...counts.values()].some((k) => k > 1);
  g.save();
  g.globalAlpha = measured ? 1 : 0.45;
  // The answer last: on top of the others.
  const order = [...at].sort((a, b) => Number(a.isAnswer) - Number(b.isAnswer) || a.index - b.index);
  for (const c of order) {
    const mass = Number.isFinite(c.mass) ? Math.max(0, Math.min(1, c.mass)) : 0;
    g.fillStyle = c.colour;
    g.globalAlpha = (measured ? 1 : 0.45) * 0.45 * mass;
    for (const [r, col] of c.cells) g.fillRect(col * cw, r * ch, cw, ch);
    g.globalAlpha = measured ? 1 : 0.45;
    const inset = (shared ? 2 + 3 * c.index : 1.5) / cw;
    g.strokeStyle = c.colour;
    g.lineWidth = 1.5 + 3 * mass;
    g.setLineDash(c.alive ? [] : [5, 4]);
    g.beginPath();
    for (const [x0, y0, x1, y1] of cachedOutline(c.cells, inset)) {
      g.moveTo(x0 * cw, y0 * ch);
      g.lineTo(x1 * cw, y1 * ch);
    }
    g.stroke();
  }
  g.setLineDash([]);
  g.font = "bold 12px system-ui, sans-serif";
  g.textAlign = "center";
  g.textBaseline = "middle";
  for (const c of order) {
    if (!c.anchor) continue;
    const text = `${c.isWinner ? "★" : ""}${formatMass(c.mass)}`;
    const [r, col] = c.anchor;
    const x = (col + 0.5) * cw;
    const y = (r + 0.5) * ch;
    const w = g.measureText(text).width + 6;
    g.fillStyle = "rgba(13, 17, 23, 0.8)";
    g.fillRect(x - w / 2, y - 8, w, 16);
    g.fillStyle = c.colour;
    g.fillText(text, x, y + 1);
  }
  g.restore();
}
