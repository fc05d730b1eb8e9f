// A task-scored trajectory (spec.task): its verdict as a badge and its candidate curve as a chart.
// Both come from the manifest's trajectory entry (task_score, candidates); absent, nothing is shown.

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

/**
 * The series of a candidate curve: live candidates per step (right axis) and each candidate's mass
 * per step, the answer's solid and named in the legend, the others dashed; `winners` marks each step's winning candidate.
 * @param {{steps: number[], labels: string[], answer: number, masses: number[][], live: number[], winner: (number|null)[]}} candidates
 */
export function candidateSeries(candidates) {
  const { steps, labels, answer, masses, live, winner } = candidates;
  const mass = labels.map((label, j) => ({
    name: j === answer ? `${label} (answer)` : label,
    color: j === answer ? ANSWER_COLOUR : CANDIDATE_COLOURS[j % CANDIDATE_COLOURS.length],
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
