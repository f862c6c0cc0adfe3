// Run history, newest first, filtered by state or task; new runs and state changes appear live.

import { livePages } from "../list.js";
import { h, swap } from "../dom.js";
import { duration, whenShort } from "../format.js";
import { badge, empty, failure, passOn } from "../ui.js";

const PAGE = 50;
const STATES = ["queued", "running", "succeeded", "failed", "dead", "canceled", "skipped"];

export function runDuration(r) {
  if (!r.started_at) return "—";
  const end = r.finished_at ? Date.parse(r.finished_at) : Date.now();
  return duration(end - Date.parse(r.started_at));
}

/** A table of runs (also used by the task page and the overview). */
export function runTable(runs, { showTask = true } = {}) {
  const head = ["Run", showTask ? "Task" : null, "State", "Started by", "Scheduled for", "Duration", "Attempt"].filter(Boolean);
  return h("table", { class: "grid runs" },
    h("caption", { class: "visually-hidden" }, "Runs, newest first"),
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, runs.map((r) => h("tr", { dataset: { runId: r.id, state: r.state } },
      h("th", { scope: "row" }, h("a", { href: `#/runs/${r.id}`, dataset: { focusKey: `run-${r.id}` } }, `#${r.id}`)),
      showTask ? h("td", { "data-label": "Task" }, h("a", { href: `#/tasks/${r.task_id}` }, r.task_title || r.task_id)) : null,
      h("td", { "data-label": "State" }, badge(r.state)),
      h("td", { "data-label": "Started by" }, r.origin === "manual" ? "hand" : r.origin),
      h("td", { "data-label": "Scheduled for" }, h("time", { datetime: r.scheduled_for }, whenShort(r.scheduled_for))),
      h("td", { "data-label": "Duration" }, runDuration(r)),
      h("td", { "data-label": "Attempt" }, `${r.attempt}/${r.max_attempts}`)))));
}

export default async function runs(view) {
  view.title("Runs");
  const state = view.query.get("state") || "";
  const taskId = view.query.get("task") || "";
  const body = h("div", { class: "table-wrap" });
  const more = h("div", { class: "more" });
  const select = h("select", { id: "run-state", "aria-label": "State" },
    ["", ...STATES].map((v) => h("option", { value: v, selected: v === state }, v || "any state")));
  select.addEventListener("change", () => {
    const q = new URLSearchParams();
    if (select.value) q.set("state", select.value);
    if (taskId) q.set("task", taskId);
    view.navigate(`#/runs${q.toString() ? `?${q}` : ""}`);
  });
  view.main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Runs"),
      h("div", { class: "filters" }, h("label", { for: "run-state" }, "State "), select,
        taskId ? h("a", { class: "btn btn-quiet", href: "#/runs" }, "All tasks") : null)),
    body, more);

  function render(items, loadMore) {
    if (!items.length) {
      swap(body, empty(state ? `No ${state} runs.` : "No runs yet.",
        "Runs appear here as soon as a schedule fires or you press Run now on the ",
        h("a", { href: "#/tasks" }, "Tasks"), " page."));
    } else {
      swap(body, runTable(items));
    }
    more.replaceChildren(loadMore ? h("button", { type: "button", class: "btn", onclick: loadMore }, "Load older runs") : "");
  }

  let list;
  try {
    list = await livePages(view, {
      path: "/runs",
      query: { state: state || undefined, task_id: taskId || undefined },
      pageSize: PAGE,
      // Faster while something is in flight, so its state changes show promptly.
      interval: (items) => (items.some((r) => r.state === "running" || r.state === "queued") ? 2000 : 5000),
      render,
    });
  } catch (e) {
    passOn(e);
    swap(body, failure(e, "The runs could not be loaded"));
    view.ready("error");
    return;
  }
  view.ready(list.items().length ? "ready" : "empty");
}
