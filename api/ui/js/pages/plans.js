// Recent plans: the runs among the latest that hold a solver.solve step with a plan.

import { api } from "../api.js";
import { h, swap } from "../dom.js";
import { minutes as fmtMinutes, whenShort } from "../format.js";
import { badge, empty, failure, passOn } from "../ui.js";

const SCAN = 200; // runs looked at: one page of GET /runs

export default async function plans(view) {
  view.title("Plans");
  const body = h("div", { class: "table-wrap" });
  view.main.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Plans")),
    h("p", { class: "muted" }, `Plans made by solver.solve steps in your latest ${SCAN} runs.`), body);

  function render(found) {
    if (!found.length) {
      swap(body, empty("No plans in the latest runs.",
        "A run of a task with a solver.solve step (for example catalogs/examples/plan_tomorrow.yaml) shows its plan here."));
      return;
    }
    swap(body, h("table", { class: "grid plans" },
      h("caption", { class: "visually-hidden" }, "Recent plans"),
      h("thead", {}, h("tr", {}, ["Plan", "Task", "Solver status", "Makespan", "Finished"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, found.map(({ run, step }) => h("tr", {},
        h("th", { scope: "row" }, h("a", { href: `#/runs/${run.id}/plan/${encodeURIComponent(step.id)}`, dataset: { focusKey: `plan-${run.id}-${step.id}` } },
          `Run #${run.id} · ${step.id}`)),
        h("td", { "data-label": "Task" }, h("a", { href: `#/tasks/${run.task_id}` }, run.task_title || run.task_id)),
        h("td", { "data-label": "Solver status" }, step.output && step.output.status ? badge(step.output.status) : h("span", { class: "muted" }, "see the run")),
        h("td", { "data-label": "Makespan" }, step.output && Number.isFinite(step.output.makespan) ? fmtMinutes(step.output.makespan) : "—"),
        h("td", { "data-label": "Finished" }, h("time", { datetime: run.finished_at }, whenShort(run.finished_at))))))));
  }

  async function load() {
    const page = await api("/runs", { query: { limit: SCAN, state: ["succeeded", "failed", "dead"] }, signal: view.signal });
    const found = [];
    for (const run of page.items) {
      for (const step of run.steps || []) {
        if (step.uses === "solver.solve" && step.state === "ok") found.push({ run, step });
      }
    }
    return found;
  }

  let found;
  try {
    found = await load();
  } catch (e) {
    passOn(e);
    swap(body, failure(e, "The runs could not be loaded"));
    view.ready("error");
    return;
  }
  render(found);
  view.ready(found.length ? "ready" : "empty");
  let last = JSON.stringify(found.map((f) => [f.run.id, f.step.id]));
  view.live(async () => {
    const again = await load();
    const key = JSON.stringify(again.map((f) => [f.run.id, f.step.id]));
    if (key !== last) {
      last = key;
      render(again);
    }
  }, 15000);
}
