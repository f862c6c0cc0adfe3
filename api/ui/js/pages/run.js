// One run: its state, timing, and every step with its duration and output or error; live while it
// waits or runs. A solver.solve step links to its plan.

import { api } from "../api.js";
import { h, swap, announce } from "../dom.js";
import { duration, when, pretty, relative } from "../format.js";
import { actionButton, badge, empty, facts, failure, needs, passOn } from "../ui.js";

const PENDING = new Set(["queued", "running", "failed"]);
const FOLD_ABOVE = 1500; // characters of pretty JSON shown open; longer outputs start folded

export default async function run(view) {
  const [id] = view.params;
  view.title(`Run ${id}`);
  const content = h("div", { class: "run" });
  view.main.replaceChildren(content);
  let last = "";
  let pipeline = null; // the task's steps, shown as waiting until the run records its own
  let taskTitle = null;

  async function load() {
    const r = await api(`/runs/${id}`, { signal: view.signal });
    if (PENDING.has(r.state) && !pipeline) {
      try {
        const task = await api(`/tasks/${r.task_id}`, { signal: view.signal });
        pipeline = task.payload.pipeline;
        taskTitle = task.title;
      } catch (e) {
        passOn(e);
        pipeline = []; // not readable with this token: the run's own record is enough
      }
    }
    const seen = JSON.stringify(r);
    if (seen !== last) {
      const before = last ? JSON.parse(last).state : null;
      last = seen;
      swap(content, ...page(r));
      if (before && before !== r.state) announce(`Run ${id} is ${r.state}`);
    } else if (r.state === "running") {
      const clock = content.querySelector("[data-elapsed]");
      if (clock) clock.textContent = duration(Date.now() - Date.parse(r.started_at));
    }
    return r;
  }

  function page(r) {
    const title = r.task_title || taskTitle || r.task_id;
    const running = r.state === "running";
    const steps = r.steps && r.steps.length ? r.steps : null;
    return [
      h("div", { class: "page-head" },
        h("h1", {}, `Run ${r.id} `, badge(r.state)),
        h("div", { class: "actions" },
          PENDING.has(r.state) ? actionButton("Cancel run", async () => {
            await api(`/runs/${r.id}/cancel`, { method: "POST" });
            await load();
            return `Run ${r.id}: cancel requested`;
          }, { disabledReason: needs(view.me, "tasks:write"), key: "cancel" }) : null,
          actionButton("Run task again", async () => {
            const next = await api(`/tasks/${r.task_id}/run_now`, { method: "POST" });
            view.navigate(`#/runs/${next.id}`);
            return `Run ${next.id} queued`;
          }, { disabledReason: needs(view.me, "tasks:write"), key: "again" }))),
      facts([
        ["Task", h("a", { href: `#/tasks/${r.task_id}` }, title)],
        ["Started by", r.origin === "schedule" ? "the schedule" : r.origin === "event" ? `event ${r.event_id}` : "hand (run now)"],
        ["Attempt", `${r.attempt} of ${r.max_attempts}`],
        ["Scheduled for", h("time", { datetime: r.scheduled_for }, when(r.scheduled_for))],
        r.run_at && r.state !== "running" ? ["Due", h("time", { datetime: r.run_at }, `${when(r.run_at)} (${relative(r.run_at)})`)] : null,
        ["Started", r.started_at ? h("time", { datetime: r.started_at }, when(r.started_at)) : "not yet"],
        ["Finished", r.finished_at ? h("time", { datetime: r.finished_at }, when(r.finished_at)) : "—"],
        ["Duration", running
          ? h("span", { dataset: { elapsed: "" } }, duration(Date.now() - Date.parse(r.started_at)))
          : r.started_at && r.finished_at ? duration(Date.parse(r.finished_at) - Date.parse(r.started_at)) : "—"],
        r.worker_id ? ["Worker", h("code", {}, r.worker_id)] : null,
      ]),
      PENDING.has(r.state)
        ? h("p", { class: "live", role: "status" }, h("span", { class: "pulse", "aria-hidden": "true" }),
          r.state === "failed" ? `Waiting to retry (attempt ${r.attempt + 1} of ${r.max_attempts}); this page follows it.`
            : r.state === "queued" ? "Waiting for a worker; this page follows it." : "Running; this page follows it.")
        : null,
      r.error ? errorBlock(r.error, "The run failed") : null,
      h("h2", {}, "Steps"),
      steps ? h("ol", { class: "steps" }, steps.map((step) => stepItem(r, step)))
        : pipeline && pipeline.length ? h("ol", { class: "steps" }, pipeline.map((step) => waitingStep(step, running)))
          : empty(PENDING.has(r.state) ? "No step has finished yet." : "This run recorded no steps.",
            r.state === "canceled" || r.state === "skipped" ? `It was ${r.state} before it started.` : ""),
      attempts(r),
    ];
  }

  function stepItem(r, step) {
    const isPlan = step.uses === "solver.solve" && step.state === "ok" && step.output && !step.output.truncated;
    return h("li", { class: "step", dataset: { step: step.id, state: step.state } },
      h("div", { class: "step-head" },
        h("h3", {}, step.id), h("code", {}, step.uses), badge(step.state),
        h("span", { class: "muted" }, duration(step.duration_ms)),
        isPlan && step.output.assignments && step.output.assignments.length
          ? h("a", { class: "btn btn-small", href: `#/runs/${r.id}/plan/${encodeURIComponent(step.id)}` }, "Open plan")
          : null),
      step.error ? errorBlock(step.error, `Step ${step.id} failed`) : null,
      step.state === "skipped" ? h("p", { class: "muted" }, "Skipped: its condition was false.") : null,
      step.output !== undefined && step.output !== null ? output(step) : null);
  }

  function output(step) {
    const text = pretty(step.output);
    const pre = h("pre", { class: "json", tabindex: "0", "aria-label": `Output of ${step.id}` }, text);
    if (text.length <= FOLD_ABOVE) return pre;
    return h("details", { class: "fold", dataset: { fold: `out-${step.id}` } },
      h("summary", {}, `Output (${text.length.toLocaleString()} characters)`), pre);
  }

  function waitingStep(step, running) {
    return h("li", { class: "step step-waiting", dataset: { step: step.id, state: "waiting" } },
      h("div", { class: "step-head" }, h("h3", {}, step.id), h("code", {}, step.uses),
        h("span", { class: "badge badge-waiting" }, running ? "in progress or waiting" : "waiting")));
  }

  function errorBlock(error, title) {
    const details = error.details && Object.keys(error.details).length ? pretty(error.details) : null;
    return h("div", { class: "error", role: "note" },
      h("p", { class: "error-title" }, title, error.code ? ` · ${error.code}` : ""),
      h("p", {}, error.message || pretty(error)),
      details ? h("pre", { class: "json" }, details) : null);
  }

  function attempts(r) {
    const earlier = (r.attempts || []).filter((a) => a.attempt !== r.attempt || PENDING.has(r.state));
    if (!earlier.length) return null;
    return h("section", { "aria-labelledby": "attempts-h" },
      h("h2", { id: "attempts-h" }, "Earlier attempts"),
      h("ol", { class: "attempts" }, earlier.map((a) => h("li", {},
        h("p", {}, `Attempt ${a.attempt}: `, badge(a.state), ` ${when(a.finished_at)} · ${duration(a.duration_ms)}`),
        a.error ? errorBlock(a.error, `Attempt ${a.attempt} failed`) : null))));
  }

  let r;
  try {
    r = await load();
  } catch (e) {
    passOn(e);
    content.replaceChildren(failure(e, e.kind === "not_found" ? `There is no run ${id} you can see` : `Run ${id} could not be loaded`));
    view.ready("error");
    return;
  }
  view.ready();
  if (PENDING.has(r.state)) {
    view.live(async () => {
      const now = await load();
      if (!PENDING.has(now.state)) return null;
      return now.state === "failed" ? 3000 : 1000;
    }, r.state === "failed" ? 3000 : 1000);
  }
}
