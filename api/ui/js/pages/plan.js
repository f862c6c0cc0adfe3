// A solver.solve output as a Gantt chart, with the violations a schedule.validate step of the same
// run found, and the machines' closed time, holidays and maintenance shaded where the console can
// know them: the plant's stored availability for machines that are plant resources, and the
// calendars in the task's parameters that the solver step reads.

import { api } from "../api.js";
import { h, swap } from "../dom.js";
import { instant, minutes as fmtMinutes, number, offsetName, duration } from "../format.js";
import { drawGantt, drawLabels, describeTime, legend, naturalCompare, opKey } from "../gantt.js";
import { badge, can, empty, facts, failure, passOn } from "../ui.js";

const LABEL_MIN = 90;
const LABEL_MAX = 220;

export default async function plan(view) {
  const [runId, rawStep] = view.params;
  const stepId = decodeURIComponent(rawStep);
  view.title(`Plan · run ${runId}`);
  view.main.replaceChildren(h("p", { class: "loading", role: "status" }, "Loading the plan…"));

  let run;
  try {
    run = await api(`/runs/${runId}`, { signal: view.signal });
  } catch (e) {
    passOn(e);
    view.main.replaceChildren(failure(e, `Run ${runId} could not be loaded`));
    view.ready("error");
    return;
  }
  const step = (run.steps || []).find((st) => st.id === stepId);
  const head = h("div", { class: "page-head" },
    h("h1", {}, `Plan of run ${run.id}`, h("span", { class: "muted" }, ` · step ${stepId}`)),
    h("a", { class: "btn btn-quiet", href: `#/runs/${run.id}` }, "Back to the run"));
  if (!step || step.uses !== "solver.solve" || !step.output || typeof step.output !== "object") {
    view.main.replaceChildren(head, empty(`Run ${run.id} has no solver.solve output named ${stepId}.`,
      "Plans come from steps that use solver.solve; see ", h("a", { href: "#/plans" }, "recent plans"), "."));
    view.ready("empty");
    return;
  }
  const out = step.output;
  const check = validation(run, stepId);
  let calendars = null;
  try {
    calendars = await taskCalendars(run, stepId, view.signal);
  } catch (e) {
    passOn(e);
    // Without the task (another agent's, or deleted) the plan still draws, unshaded.
  }

  try {
    const stored = await plantCalendars(view, buildModel(out, check, null));
    if (stored) {
      // The plant's stored availability is what the solver plans against; task calendars fill in.
      const windows = new Map([...(calendars ? calendars.windows : []), ...stored.windows]);
      calendars = { windows, source: calendars ? `${stored.source}; ${calendars.source}` : stored.source };
    }
  } catch (e) {
    passOn(e);
  }
  const model = buildModel(out, check, calendars);
  const summary = facts([
    ["Status", badge(out.status)],
    ["Objective", number(out.objective, 2)],
    ["Makespan", out.makespan === null || out.makespan === undefined ? "—" : fmtMinutes(out.makespan)],
    ["Bound · gap", `${number(out.bound, 2)} · ${out.gap === null || out.gap === undefined ? "—" : `${(out.gap * 100).toFixed(1)} %`}`],
    ["Solve time", duration((out.wall_s || 0) * 1000)],
    ["Operations", `${model.ops.length} of ${model.jobs.length} jobs on ${model.lanes.length} machines`],
    model.clock ? ["Times in", offsetName(model.clock.offset)] : ["Times", "minutes from the start of the plan"],
    ["Validation", check ? (check.valid ? h("span", { class: "badge badge-ok" }, "valid")
      : h("span", { class: "badge badge-dead" }, `${check.violations.length}${check.truncated ? "+" : ""} violation${check.violations.length === 1 ? "" : "s"}`))
      : h("span", { class: "muted" }, "no schedule.validate step in this run")],
    ["Closed time", calendars ? calendars.source : h("span", { class: "muted" }, "not shown: no stored availability or task calendar for these machines")],
  ]);

  if (!model.ops.length) {
    view.main.replaceChildren(head, summary, empty(`The solver returned no plan (${out.status}).`,
      out.reason || "", ...(out.reasons || []).map((r) => h("span", { class: "block" }, `${r.code}: ${r.message}`))));
    view.ready("empty");
    return;
  }

  let zoom = 1;
  const labelWidth = Math.min(LABEL_MAX, Math.max(LABEL_MIN, 16 + 7.4 * Math.max(...model.lanes.map((l) => l.length))));
  const scroller = h("div", { class: "gantt-scroll", tabindex: "-1" });
  const chartRow = h("div", { class: "gantt-row" }, drawLabels(model, labelWidth), scroller);
  const tooltip = document.getElementById("tooltip");
  const hide = () => { tooltip.hidden = true; };
  view.signal.addEventListener("abort", hide);

  function onHover(op, anchor) {
    if (!op) return hide();
    const flagged = model.flagged.get(opKey(op)) || [];
    swap(tooltip,
      h("strong", {}, `${op.job} · ${op.operation}`),
      h("dl", {},
        h("dt", {}, "Machine"), h("dd", {}, op.machine),
        op.operator ? [h("dt", {}, "Operator"), h("dd", {}, op.operator)] : null,
        h("dt", {}, "Start"), h("dd", {}, describeTime(model, op.start)),
        h("dt", {}, "End"), h("dd", {}, describeTime(model, op.end)),
        h("dt", {}, "Duration"), h("dd", {}, fmtMinutes(op.end - op.start))),
      flagged.length ? h("ul", { class: "tooltip-violations" }, flagged.map((v) => h("li", {}, `${v.code}: ${v.message}`))) : null);
    tooltip.hidden = false;
    const box = anchor.getBoundingClientRect();
    const tip = tooltip.getBoundingClientRect();
    const left = Math.min(window.innerWidth - tip.width - 8, Math.max(8, box.left));
    const below = box.bottom + 6 + tip.height < window.innerHeight;
    tooltip.style.left = `${left}px`;
    tooltip.style.top = `${below ? box.bottom + 6 : Math.max(8, box.top - tip.height - 6)}px`;
  }

  function draw() {
    const width = Math.max(320, (scroller.clientWidth - 2) * zoom);
    swap(scroller, drawGantt(model, { width, onHover }));
    applyPicks();
  }

  // Picking a job or a violation keeps its bars bright and dims the rest.
  let picked = null; // {kind, value, button}
  function applyPicks() {
    const chart = scroller.querySelector("svg.gantt");
    if (!chart) return;
    chart.classList.toggle("picking", Boolean(picked));
    for (const g of chart.querySelectorAll("g.op")) {
      const on = picked && (picked.kind === "job" ? g.dataset.job === picked.value
        : picked.value.has(opKey(g.dataset)));
      g.classList.toggle("picked", Boolean(on));
    }
  }
  function pick(kind, value, button) {
    const same = picked && picked.button === button;
    if (picked) picked.button.setAttribute("aria-pressed", "false");
    picked = same ? null : { kind, value, button };
    if (picked) button.setAttribute("aria-pressed", "true");
    applyPicks();
  }

  const zoomBar = h("div", { class: "zoom", role: "group", "aria-label": "Zoom" },
    h("button", { type: "button", class: "btn btn-small", onclick: () => { zoom = Math.max(1, zoom / 2); draw(); }, "aria-label": "Zoom out" }, "−"),
    h("button", { type: "button", class: "btn btn-small", onclick: () => { zoom = Math.min(64, zoom * 2); draw(); }, "aria-label": "Zoom in" }, "+"),
    h("button", { type: "button", class: "btn btn-small", onclick: () => { zoom = 1; draw(); } }, "Fit"));

  const violationList = check && check.violations.length ? h("section", { "aria-labelledby": "violations-h" },
    h("h2", { id: "violations-h" }, "Violations"),
    h("ol", { class: "violations" }, check.violations.map((v, i) => h("li", {},
      h("button", {
        type: "button", class: "violation-pick", "aria-pressed": "false", dataset: { violation: i },
        onclick: (e) => pick("violation", new Set(v.operations.map(opKey)), e.currentTarget),
      }, h("strong", {}, v.code), " ", v.message, v.machine ? h("span", { class: "muted" }, ` (machine ${v.machine})`) : null)))),
    check.truncated ? h("p", { class: "muted" }, "The validator stopped listing after its cap; counts: ",
      Object.entries(check.counts).map(([c, n]) => `${c} ${n}`).join(", ")) : null) : null;

  view.main.replaceChildren(...[head, summary,
    h("div", { class: "gantt-tools" }, h("h2", {}, "Gantt chart"), zoomBar),
    h("figure", { class: "gantt-figure" }, chartRow,
      h("figcaption", {}, legend(model, (job, button) => pick("job", job, button)))),
    violationList].filter(Boolean));
  draw();
  let lastWidth = scroller.clientWidth;
  const resize = new ResizeObserver(() => {
    if (Math.abs(scroller.clientWidth - lastWidth) > 4) {
      lastWidth = scroller.clientWidth;
      draw();
    }
  });
  resize.observe(scroller);
  view.signal.addEventListener("abort", () => resize.disconnect());
  view.ready();
}

/** The output of the first schedule.validate step after the plan (or anywhere in the run). */
function validation(run, stepId) {
  const steps = run.steps || [];
  const at = steps.findIndex((st) => st.id === stepId);
  const ok = (st) => st.uses === "schedule.validate" && st.state === "ok" && st.output && Array.isArray(st.output.violations);
  const found = steps.slice(at + 1).find(ok) || steps.find(ok);
  return found ? found.output : null;
}

/**
 * Machine calendars from the task's parameters, when the solver step reads its problem from them:
 * its `with` is "${params.a.b}" or an object whose machines / calendars are literal or such a
 * reference. Any other template is the engine's to evaluate, and then nothing is shaded.
 */
async function taskCalendars(run, stepId, signal) {
  const task = await api(`/tasks/${run.task_id}`, { signal });
  const def = (task.payload.pipeline || []).find((st) => st.id === stepId);
  if (!def) return null;
  const params = task.payload.params || {};
  const resolve = (value) => {
    if (typeof value !== "string") return value;
    const m = /^\$\{\s*params((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}$/.exec(value);
    if (!m) return undefined;
    return m[1].split(".").filter(Boolean).reduce((v, k) => (v && typeof v === "object" ? v[k] : undefined), params);
  };
  const problem = resolve(def.with);
  if (!problem || typeof problem !== "object") return null;
  const windows = new Map();
  const machines = resolve(problem.machines);
  for (const m of Array.isArray(machines) ? machines : []) {
    if (m && typeof m === "object" && Array.isArray(m.calendar)) windows.set(m.id, m.calendar);
  }
  const calendars = resolve(problem.calendars);
  for (const [id, cal] of Object.entries(calendars && typeof calendars === "object" ? calendars : {})) {
    if (!windows.has(id) && Array.isArray(cal)) windows.set(id, cal);
  }
  if (!windows.size) return null;
  return { windows, source: `machine calendars from the task's parameters (as the task reads now), ${windows.size} machine${windows.size > 1 ? "s" : ""}` };
}

/**
 * Shifts from the plant's stored availability (schedule.generate) for the lanes that are plant
 * resources (matched by code), over the plan's days. Only for plans in real time, and only with
 * availability:read (asking without it would be refused).
 */
async function plantCalendars(view, model) {
  if (!model.clock || !model.ops.length || !can(view.me, "availability:read")) return null;
  const dayMs = 86_400_000;
  const from = model.clock.origin_ms + model.span[0] * 60000;
  const to = model.clock.origin_ms + model.span[1] * 60000;
  if (to - from > 31 * dayMs) return null; // a month of every resource's shifts is more than a chart needs
  const date = (ms) => new Date(ms + model.clock.offset * 60000).toISOString().slice(0, 10);
  const report = await api("/availability", {
    query: { start: date(from - dayMs), end: date(to + dayMs), detail: "shifts" }, signal: view.signal,
  });
  const lanes = new Set(model.lanes);
  const windows = new Map();
  for (const resource of report.resources) {
    if (!lanes.has(resource.code)) continue;
    windows.set(resource.code, resource.days.flatMap((d) => d.shifts || []).map((sh) => ({
      start: sh.start, end: sh.end, status: sh.status, note: sh.note,
    })));
  }
  if (!windows.size) return null;
  return { windows, source: `the plant's stored availability (shifts, holidays, maintenance), ${windows.size} machine${windows.size > 1 ? "s" : ""}` };
}

/** Plan output -> what drawGantt draws, with every time in minutes from one origin. */
export function buildModel(out, check, calendars) {
  const assignments = Array.isArray(out.assignments) ? out.assignments : [];
  const horizon = typeof out.horizon_start === "string" ? instant(out.horizon_start) : null;
  const firstIso = assignments.map((a) => a.start).find((v) => typeof v === "string");
  const firstInstant = firstIso ? instant(firstIso) : null;
  let clock = null;
  if (horizon || firstInstant) {
    const isoStarts = assignments.filter((a) => typeof a.start === "string").map((a) => instant(a.start).ms);
    const originMs = horizon ? horizon.ms : Math.min(...isoStarts);
    clock = { origin_ms: originMs, offset: (horizon || firstInstant).offset };
  }
  const toMinutes = (v) => {
    if (typeof v === "number") return v;
    const t = instant(String(v));
    return t && clock ? (t.ms - clock.origin_ms) / 60000 : NaN;
  };
  const ops = assignments.map((a) => ({
    job: String(a.job), operation: String(a.operation), machine: String(a.machine), operator: a.operator,
    start: toMinutes(a.start), end: toMinutes(a.end),
  })).filter((op) => Number.isFinite(op.start) && Number.isFinite(op.end));
  const lanes = [...new Set(ops.map((op) => op.machine))].sort(naturalCompare);
  const jobs = [...new Set(ops.map((op) => op.job))];
  let lo = Math.min(0, ...ops.map((op) => op.start));
  let hi = Math.max(...ops.map((op) => op.end), lo + 1);
  const pad = (hi - lo) * 0.02;
  lo -= lo < 0 ? pad : 0;
  hi += pad;

  const shading = [];
  if (calendars) {
    for (const machine of lanes) {
      const cal = calendars.windows.get(machine);
      if (!cal) continue;
      const open = [];
      for (const w of cal) {
        const a = toMinutes(w.start);
        const b = toMinutes(w.end);
        if (!Number.isFinite(a) || !Number.isFinite(b) || b <= a) continue;
        if (w.status && w.status !== "available") {
          const kind = /holiday/i.test(w.status) ? "holiday" : "maintenance";
          shading.push({ machine, start: a, end: b, kind, label: `${machine}: ${w.status}${w.note ? ` (${w.note})` : ""}` });
        } else open.push([a, b]);
      }
      open.sort((p, q) => p[0] - q[0]);
      let cursor = lo;
      for (const [a, b] of open) {
        if (a > cursor) shading.push({ machine, start: cursor, end: a, kind: "closed", label: `${machine}: closed` });
        cursor = Math.max(cursor, b);
      }
      if (cursor < hi) shading.push({ machine, start: cursor, end: hi, kind: "closed", label: `${machine}: closed` });
    }
  }
  const flagged = new Map();
  for (const v of check ? check.violations : []) {
    for (const o of v.operations || []) {
      const key = opKey(o);
      if (!flagged.has(key)) flagged.set(key, []);
      flagged.get(key).push(v);
    }
  }
  return { lanes, jobs, ops, span: [lo, hi], clock, shading, flagged };
}
