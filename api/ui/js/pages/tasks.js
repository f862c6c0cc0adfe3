// Tasks: each with its schedule in words and next five occurrences, its status, and run now /
// pause / resume. The list refreshes while shown; previews are fetched for the rows on screen.

import { api } from "../api.js";
import { livePages } from "../list.js";
import { h, swap, announce } from "../dom.js";
import { inZone, relative } from "../format.js";
import { actionButton, badge, empty, failure, needs, passOn } from "../ui.js";

const PAGE = 50;
const TIMED = new Set(["cron", "rrule", "once"]);

export default async function tasks(view) {
  view.title("Tasks");
  const status = view.query.get("status") || "";
  const text = view.query.get("q") || "";
  let items = [];
  const previews = new Map(); // task id -> {version, occurrences, first}
  const body = h("div", { class: "table-wrap" });
  const more = h("div", { class: "more" });
  const summary = h("p", { class: "muted", role: "status" });

  const search = h("input", { type: "search", id: "task-search", name: "q", value: text,
    placeholder: "Title or description", "aria-label": "Search tasks" });
  const statusSelect = h("select", { id: "task-status", name: "status", "aria-label": "Status" },
    ["", "active", "paused", "canceled"].map((v) =>
      h("option", { value: v, selected: v === status }, v || "any status")));
  const filters = h("form", { class: "filters", role: "search" }, search, statusSelect,
    h("button", { type: "submit", class: "btn" }, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    if (search.value.trim()) q.set("q", search.value.trim());
    if (statusSelect.value) q.set("status", statusSelect.value);
    view.navigate(`#/tasks${q.toString() ? `?${q}` : ""}`);
  });
  statusSelect.addEventListener("change", () => filters.requestSubmit());

  view.main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Tasks"), filters),
    summary, body, more,
  );

  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) {
        observer.unobserve(entry.target);
        loadPreview(entry.target.dataset.taskId);
      }
    }
  });
  view.signal.addEventListener("abort", () => observer.disconnect());

  async function loadPreview(id) {
    const task = items.find((t) => t.id === id);
    if (!task || !TIMED.has(task.schedule_kind)) return;
    const known = previews.get(id);
    if (known && known.version === task.version && (!known.first || Date.parse(known.first) > Date.now())) return;
    try {
      const out = await api(`/tasks/${id}/preview`, { query: { count: 5 }, signal: view.signal });
      previews.set(id, { version: task.version, occurrences: out.occurrences, first: out.occurrences[0], cutShort: out.cut_short });
      const cell = body.querySelector(`[data-next-for="${id}"]`);
      if (cell) swap(cell, nextList(task, previews.get(id)));
    } catch (e) {
      if (e.name !== "AbortError") {
        const cell = body.querySelector(`[data-next-for="${id}"]`);
        if (cell) swap(cell, h("span", { class: "muted" }, `next occurrences unavailable: ${e.message}`));
      }
    }
  }

  function nextList(task, preview) {
    if (!TIMED.has(task.schedule_kind)) return null;
    if (!preview) return h("span", { class: "muted" }, "…");
    if (!preview.occurrences.length) return h("span", { class: "muted" }, "no further occurrences");
    const label = `Next ${preview.occurrences.length} occurrences${task.status === "paused" ? " if resumed" : ""}`;
    const list = h("ol", { class: "next", "aria-label": label, title: label },
      preview.occurrences.map((o) => h("li", {},
        h("time", { datetime: o, title: relative(o) }, inZone(o, task.timezone, true)))));
    if (!preview.cutShort) return list;
    return h("div", {}, list, h("span", { class: "muted", title: preview.cutShort.message }, "only these: the rule is too costly to preview further"));
  }


  function actions(task) {
    if (task.status === "canceled") return h("span", { class: "muted" }, "canceled");
    const reason = needs(view.me, "tasks:write");
    return [
      actionButton("Run now", async () => {
        const run = await api(`/tasks/${task.id}/run_now`, { method: "POST" });
        view.navigate(`#/runs/${run.id}`);
        return `Run ${run.id} of ${task.title} queued`;
      }, { disabledReason: reason, kind: "btn-primary", key: `run-${task.id}` }),
      task.status === "active"
        ? actionButton("Pause", async () => {
          list.replace(await api(`/tasks/${task.id}/pause`, { method: "POST" }));
          return `${task.title} paused`;
        }, { disabledReason: reason, key: `pause-${task.id}` })
        : actionButton("Resume", async () => {
          list.replace(await api(`/tasks/${task.id}/resume`, { method: "POST" }));
          return `${task.title} resumed`;
        }, { disabledReason: reason, key: `resume-${task.id}` }),
    ];
  }

  function row(task) {
    return h("tr", { dataset: { taskId: task.id } },
      h("th", { scope: "row" },
        h("a", { href: `#/tasks/${task.id}`, dataset: { focusKey: `task-${task.id}` } }, task.title),
        task.description ? h("div", { class: "muted clamp" }, task.description) : null),
      h("td", { "data-label": "Schedule" },
        h("div", { class: "schedule-text" }, task.schedule_text),
        h("div", { dataset: { nextFor: task.id } }, nextList(task, previews.get(task.id)))),
      h("td", { "data-label": "Status" }, badge(task.status)),
      h("td", { "data-label": "Actions", class: "actions" }, actions(task)));
  }

  function render(loaded, loadMore) {
    items = loaded;
    if (!items.length) {
      swap(body, empty(text || status ? "No tasks match these filters." : "No tasks yet.",
        text || status ? "Clear the filters to see every task."
          : "Add one with `ordo task add FILE` or POST /tasks; it appears here within seconds."));
      summary.textContent = "";
      more.replaceChildren();
      return;
    }
    swap(body, h("table", { class: "grid tasks" },
      h("caption", { class: "visually-hidden" }, "Tasks"),
      h("thead", {}, h("tr", {}, ["Task", "Schedule", "Status", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, items.map(row))));
    for (const tr of body.querySelectorAll("tr[data-task-id]")) observer.observe(tr);
    summary.textContent = `${items.length}${loadMore ? "+" : ""} task${items.length === 1 ? "" : "s"}`;
    more.replaceChildren(loadMore ? h("button", { type: "button", class: "btn", onclick: async () => {
      announce(`${await loadMore()} more tasks`);
    } }, "Load more") : "");
  }

  let list;
  try {
    // Status changes made elsewhere (the CLI, another tab, the scheduler) show up without a reload.
    list = await livePages(view, {
      path: "/tasks",
      query: { status: status || undefined, text: text || undefined },
      pageSize: PAGE,
      interval: 10000,
      render,
    });
  } catch (e) {
    passOn(e);
    swap(body, failure(e, "The tasks could not be loaded"));
    view.ready("error");
    return;
  }
  view.ready(items.length ? "ready" : "empty");
}
