// A plan as an SVG Gantt chart: one lane per machine, one bar per operation coloured by job, closed
// time and maintenance shaded under the bars, schedule.validate violations outlined. Pure drawing:
// the plan page gathers the data; this turns it into elements and wires hover, focus and keys.

import { h, s } from "./dom.js";
import { clockAt, dayAt, minutes as fmtMinutes, offsetName } from "./format.js";

const LANE = 34;
const BAR = 22;
const AXIS = 44;
const MIN_TICK_PX = 76;
// Tick steps in minutes: from 1 minute to 4 weeks.
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440, 2880, 10080, 20160, 40320];
// Distinct, colour-blind-aware hues first (Okabe-Ito and Tableau), then golden-angle hues.
const PALETTE = [
  "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#4E79A7",
  "#F28E2B", "#59A14F", "#B07AA1", "#76B7B2", "#EDC948", "#FF9DA7", "#9C755F", "#BAB0AC",
];

export function jobColour(index) {
  if (index < PALETTE.length) return PALETTE[index];
  const hue = Math.round((index * 137.508) % 360);
  return `hsl(${hue} 62% 52%)`;
}

function textOn(colour) {
  // Black or white text, whichever contrasts more with the bar (WCAG relative luminance).
  let r, g, b;
  if (colour.startsWith("#")) {
    [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16) / 255);
  } else {
    return "#000";
  }
  const lin = (c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
  const L = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  return L > 0.4 ? "#000" : "#fff";
}

/** "m2" < "m10": machine ids sorted as people count. */
export function naturalCompare(a, b) {
  return String(a).localeCompare(String(b), undefined, { numeric: true, sensitivity: "base" });
}

/**
 * Draw the chart. `model`:
 *   lanes: [machine id], ops: [{job, operation, machine, operator, start, end}] with start/end in
 *   minutes from the origin, jobs: [job id] (colour order), span: [from, to] minutes,
 *   clock: {origin_ms, offset} when times are real instants (labels then read as wall clock),
 *   shading: [{machine, start, end, kind: "closed"|"maintenance"|"holiday", label}],
 *   flagged: Map(op key -> [violation]).
 * Options: width (px of the time area), onHover(op|null, anchor).
 */
export function drawGantt(model, { width, onHover }) {
  const [from, to] = model.span;
  const span = Math.max(1, to - from);
  const px = width / span;
  const x = (m) => (m - from) * px;
  const height = AXIS + model.lanes.length * LANE + 8;
  const laneIndex = new Map(model.lanes.map((m, i) => [m, i]));
  const jobIndex = new Map(model.jobs.map((j, i) => [j, i]));

  const svg = s("svg", {
    class: "gantt", width: Math.ceil(width) + 1, height, viewBox: `0 0 ${Math.ceil(width) + 1} ${height}`,
    role: "group", "aria-label": `Gantt chart: ${model.ops.length} operations on ${model.lanes.length} machines`,
  });
  svg.append(patterns());

  // Lane backgrounds, alternate shading helps the eye follow a lane.
  const lanes = s("g", { class: "lanes" });
  model.lanes.forEach((machine, i) => {
    lanes.append(s("rect", {
      class: i % 2 ? "lane lane-odd" : "lane", x: 0, y: AXIS + i * LANE, width: Math.ceil(width) + 1, height: LANE,
      dataset: { lane: machine },
    }));
  });
  svg.append(lanes);

  // Closed time, maintenance and holidays under the bars.
  const shades = s("g", { class: "shades" });
  for (const sh of model.shading) {
    const i = laneIndex.get(sh.machine);
    if (i === undefined) continue;
    const a = Math.max(from, sh.start);
    const b = Math.min(to, sh.end);
    if (b <= a) continue;
    shades.append(s("rect", {
      class: `shade shade-${sh.kind}`, x: x(a), y: AXIS + i * LANE + 1, width: Math.max(1, (b - a) * px), height: LANE - 2,
      dataset: { machine: sh.machine, kind: sh.kind },
    }, s("title", {}, sh.label)));
  }
  svg.append(shades);
  svg.append(axis(model, from, to, px, height, width));

  // Bars: one focusable group each; the chart is one tab stop and arrow keys move between bars.
  const bars = s("g", { class: "bars" });
  const byLane = model.lanes.map(() => []);
  model.ops.forEach((op, k) => {
    const i = laneIndex.get(op.machine);
    const colour = jobColour(jobIndex.get(op.job) ?? 0);
    const bx = x(op.start);
    const bw = Math.max(2, (op.end - op.start) * px);
    const flagged = model.flagged.get(opKey(op));
    const label = `${op.job} · ${op.operation}`;
    const g = s("g", {
      class: flagged ? "op op-flagged" : "op",
      tabindex: k === 0 ? 0 : -1,
      role: "img",
      "aria-label": `${label} on ${op.machine}, ${describeTime(model, op.start)} to ${describeTime(model, op.end)}`
        + (flagged ? `; ${flagged.length} violation${flagged.length > 1 ? "s" : ""}` : ""),
      dataset: { job: op.job, operation: op.operation, machine: op.machine, index: k },
    });
    g.append(s("rect", {
      class: "bar", x: bx, y: AXIS + i * LANE + (LANE - BAR) / 2, width: bw, height: BAR, rx: 3, fill: colour,
    }));
    if (bw > label.length * 6.6 + 8) {
      g.append(s("text", { x: bx + 4, y: AXIS + i * LANE + LANE / 2 + 4, fill: textOn(colour), class: "bar-label" }, label));
    } else if (bw > op.job.length * 6.6 + 8) {
      g.append(s("text", { x: bx + 4, y: AXIS + i * LANE + LANE / 2 + 4, fill: textOn(colour), class: "bar-label" }, op.job));
    }
    if (flagged) {
      g.append(s("path", {
        class: "flag-mark", d: `M${bx + bw - 9},${AXIS + i * LANE + 3} l5,-0 l-2.5,6 z`, "aria-hidden": "true",
      }));
    }
    bars.append(g);
    byLane[i].push(g);
  });
  svg.append(bars);
  byLane.forEach((list) => list.sort((a, b) => model.ops[a.dataset.index].start - model.ops[b.dataset.index].start));

  const show = (g) => onHover && onHover(g ? model.ops[g.dataset.index] : null, g);
  bars.addEventListener("pointerover", (e) => {
    const g = e.target.closest("g.op");
    if (g) show(g);
  });
  bars.addEventListener("pointerleave", () => show(null));
  bars.addEventListener("focusin", (e) => show(e.target.closest("g.op")));
  bars.addEventListener("focusout", () => show(null));
  bars.addEventListener("keydown", (e) => {
    const g = e.target.closest("g.op");
    if (!g) return;
    const op = model.ops[g.dataset.index];
    const lane = laneIndex.get(op.machine);
    const list = byLane[lane];
    const at = list.indexOf(g);
    let next = null;
    if (e.key === "ArrowRight") next = list[at + 1];
    else if (e.key === "ArrowLeft") next = list[at - 1];
    else if (e.key === "Home") next = list[0];
    else if (e.key === "End") next = list[list.length - 1];
    else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      const step = e.key === "ArrowDown" ? 1 : -1;
      for (let l = lane + step; l >= 0 && l < byLane.length && !next; l += step) {
        next = nearest(byLane[l], op.start, model);
      }
    } else if (e.key === "Escape") {
      show(null);
      return;
    } else return;
    e.preventDefault();
    if (next) {
      g.setAttribute("tabindex", "-1");
      next.setAttribute("tabindex", "0");
      next.focus();
      next.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  });
  return svg;
}

function nearest(list, minute, model) {
  let best = null;
  let bestGap = Infinity;
  for (const g of list) {
    const gap = Math.abs(model.ops[g.dataset.index].start - minute);
    if (gap < bestGap) {
      best = g;
      bestGap = gap;
    }
  }
  return best;
}

export function opKey(op) {
  return `${op.job}\u0000${op.operation}`;
}

/** A minute of the plan for people: a wall-clock time when the plan has instants, else "+90 min". */
export function describeTime(model, minute) {
  if (!model.clock) return `minute ${Math.round(minute)}`;
  const ms = model.clock.origin_ms + minute * 60000;
  return `${dayAt(ms, model.clock.offset)} ${clockAt(ms, model.clock.offset)}`;
}

/** The left column: machine names, aligned with the lanes of the chart. */
export function drawLabels(model, labelWidth) {
  const height = AXIS + model.lanes.length * LANE + 8;
  const svg = s("svg", { class: "gantt-labels", width: labelWidth, height, "aria-hidden": "true" });
  svg.append(s("text", { x: 8, y: AXIS - 10, class: "axis-title" }, "Machine"));
  model.lanes.forEach((machine, i) => {
    svg.append(s("text", { x: 8, y: AXIS + i * LANE + LANE / 2 + 4, class: "lane-label" }, machine));
  });
  return svg;
}

function axis(model, from, to, px, height, width) {
  const g = s("g", { class: "axis", "aria-hidden": "true" });
  const step = STEPS.find((st) => st * px >= MIN_TICK_PX) || STEPS[STEPS.length - 1];
  const clock = model.clock;
  // Ticks on wall-clock multiples of the step (whole hours, midnights) when times are instants.
  const wallShift = clock ? (clock.origin_ms / 60000 + clock.offset) : 0;
  let t = Math.ceil((from + wallShift) / step) * step - wallShift;
  let lastDay = null;
  for (; t <= to + 1e-9; t += step) {
    const xx = (t - from) * px;
    g.append(s("line", { x1: xx, x2: xx, y1: AXIS - 6, y2: height, class: "tick" }));
    let text;
    if (!clock) {
      text = step < 60 ? `${Math.round(t)} min` : fmtMinutes(t); // 65 min, not 1 h 5 min, between 5-minute ticks
    } else {
      const ms = clock.origin_ms + t * 60000;
      const day = dayAt(ms, clock.offset);
      text = step >= 1440 ? day : clockAt(ms, clock.offset);
      if (step < 1440 && day !== lastDay) {
        g.append(s("text", { x: xx + 3, y: 14, class: "axis-day" }, day));
        lastDay = day;
      }
    }
    // A label that would run past the right edge ends at its tick instead.
    const end = xx + text.length * 6.5 + 3 > width;
    g.append(s("text", {
      x: end ? xx - 3 : xx + 3, y: AXIS - 10, class: "axis-label", "text-anchor": end ? "end" : undefined,
    }, text));
  }
  if (clock) {
    g.append(s("title", {}, `Times in ${offsetName(clock.offset)}`));
  }
  return g;
}

function patterns() {
  const defs = s("defs", {});
  const hatch = (id, colour, angle) => s("pattern", {
    id, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: `rotate(${angle})`,
  }, s("rect", { width: 6, height: 6, class: `${id}-bg` }), s("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: colour, "stroke-width": 2 }));
  defs.append(hatch("hatch-closed", "#9aa3ad", 45), hatch("hatch-maintenance", "#c2410c", -45), hatch("hatch-holiday", "#7c3aed", 45));
  return defs;
}

/** The legend: what the shades and outlines mean, and one swatch per job (press to pick a job). */
export function legend(model, onPickJob) {
  const jobs = model.jobs.slice(0, 40);
  const kinds = new Set(model.shading.map((sh) => sh.kind));
  return h("div", { class: "legend" },
    h("ul", { class: "legend-keys", "aria-label": "Key" },
      kinds.has("closed") ? h("li", {}, h("span", { class: "key key-closed", "aria-hidden": "true" }), "closed (outside the calendar)") : null,
      kinds.has("maintenance") ? h("li", {}, h("span", { class: "key key-maintenance", "aria-hidden": "true" }), "maintenance or breakdown") : null,
      kinds.has("holiday") ? h("li", {}, h("span", { class: "key key-holiday", "aria-hidden": "true" }), "holiday") : null,
      model.flagged.size ? h("li", {}, h("span", { class: "key key-flagged", "aria-hidden": "true" }), "in a violation") : null),
    h("ul", { class: "legend-jobs", "aria-label": "Jobs" },
      jobs.map((job, i) => h("li", {}, h("button", {
        type: "button", class: "job-pick", "aria-pressed": "false", dataset: { job },
        onclick: (e) => onPickJob(job, e.currentTarget),
      }, h("span", { class: "swatch", style: `background:${jobColour(i)}`, "aria-hidden": "true" }), job))),
      model.jobs.length > jobs.length ? h("li", { class: "muted" }, `and ${model.jobs.length - jobs.length} more jobs`) : null));
}

export const GANTT_LAYOUT = { LANE, AXIS };
