// One task: what it does, when it runs (in words and the next occurrences), and its latest runs.

import { api } from "../api.js";
import { h, swap } from "../dom.js";
import { inZone, pretty, relative } from "../format.js";
import { actionButton, badge, code, empty, facts, failure, needs, passOn } from "../ui.js";
import { runTable } from "./runs.js";

const TIMED = new Set(["cron", "rrule", "once"]);

export default async function task(view) {
  const [id] = view.params;
  view.title("Task");
  const head = h("div", {});
  const runsBox = h("div", { class: "table-wrap" });
  let t;
  try {
    t = await api(`/tasks/${id}`, { signal: view.signal });
  } catch (e) {
    passOn(e);
    view.main.replaceChildren(failure(e, e.kind === "not_found" ? "There is no such task you can see" : "The task could not be loaded"));
    view.ready("error");
    return;
  }
  view.title(t.title);
  let upcoming = [];
  let upcomingNote = null; // why the list is short or missing: a rule too costly to preview, an error
  if (TIMED.has(t.schedule_kind)) {
    try {
      const out = await api(`/tasks/${id}/preview`, { query: { count: 10 }, signal: view.signal });
      upcoming = out.occurrences;
      if (out.cut_short) upcomingNote = `Only the first ${upcoming.length} shown: ${out.cut_short.message}`;
    } catch (e) {
      passOn(e);
      upcomingNote = `Next occurrences unavailable: ${e.message}`;
    }
  }

  function renderHead() {
    const reason = needs(view.me, "tasks:write");
    swap(head,
      h("div", { class: "page-head" }, h("h1", {}, t.title, " ", badge(t.status)),
        t.status === "canceled" ? null : h("div", { class: "actions" },
          actionButton("Run now", async () => {
            const r = await api(`/tasks/${id}/run_now`, { method: "POST" });
            view.navigate(`#/runs/${r.id}`);
          }, { disabledReason: reason, kind: "btn-primary", key: "run" }),
          t.status === "active"
            ? actionButton("Pause", async () => { t = await api(`/tasks/${id}/pause`, { method: "POST" }); renderHead(); return "Paused"; }, { disabledReason: reason, key: "pause" })
            : actionButton("Resume", async () => { t = await api(`/tasks/${id}/resume`, { method: "POST" }); renderHead(); return "Resumed"; }, { disabledReason: reason, key: "resume" }))),
      t.description ? h("p", {}, t.description) : null,
      facts([
        ["Schedule", h("span", { class: "schedule-text" }, t.schedule_text)],
        ["Expression", t.schedule_expr ? h("pre", { class: "expr" }, t.schedule_expr) : "—"],
        ["Time zone", t.timezone],
        ["Priority", String(t.priority)],
        ["Retries", `${t.max_retries} (backoff ${t.backoff.base_s} s, up to ${t.backoff.cap_s} s)`],
        ["Timeout", `${t.timeout_s} s`],
        t.concurrency_key ? ["Concurrency", `${t.concurrency_limit} at once for key ${t.concurrency_key}`] : null,
        ["Owner agent", code(t.agent_id)],
      ]),
      TIMED.has(t.schedule_kind) ? h("section", { "aria-labelledby": "next-h" },
        h("h2", { id: "next-h" }, "Next occurrences"),
        upcoming.length ? h("ol", { class: "next next-wide" }, upcoming.map((o) => h("li", {},
          h("time", { datetime: o }, inZone(o, t.timezone)), h("span", { class: "muted" }, ` ${relative(o)}`))))
          : upcomingNote ? null : h("p", { class: "muted" }, "None: the schedule has no further occurrences."),
        upcomingNote ? h("p", { class: "muted", role: "note" }, upcomingNote) : null) : null,
      h("section", { "aria-labelledby": "pipeline-h" },
        h("h2", { id: "pipeline-h" }, "Pipeline"),
        h("ol", { class: "steps" }, (t.payload.pipeline || []).map((st) => h("li", { class: "step" },
          h("div", { class: "step-head" }, h("h3", {}, st.id), h("code", {}, st.uses),
            st.if ? h("span", { class: "muted" }, `if ${st.if}`) : null),
          st.with !== undefined ? h("details", { class: "fold", dataset: { fold: `with-${st.id}` } },
            h("summary", {}, "Input"), h("pre", { class: "json" }, pretty(st.with))) : null))),
        t.payload.params && Object.keys(t.payload.params).length ? h("details", { class: "fold", dataset: { fold: "params" } },
          h("summary", {}, "Parameters"), h("pre", { class: "json" }, pretty(t.payload.params))) : null));
  }

  async function loadRuns() {
    const page = await api("/runs", { query: { task_id: id, limit: 20 }, signal: view.signal });
    swap(runsBox, page.items.length ? runTable(page.items, { showTask: false })
      : empty("No runs yet.", "Press Run now, or wait for the schedule."));
    return page.items;
  }

  renderHead();
  view.main.replaceChildren(head, h("section", { "aria-labelledby": "runs-h" },
    h("div", { class: "page-head" }, h("h2", { id: "runs-h" }, "Latest runs"), h("a", { href: `#/runs?task=${id}` }, "All runs of this task")),
    runsBox));
  let items = [];
  try {
    items = await loadRuns();
  } catch (e) {
    passOn(e);
    swap(runsBox, failure(e, "The runs could not be loaded"));
  }
  view.ready();
  view.live(async () => {
    items = await loadRuns();
    return items.some((r) => r.state === "running" || r.state === "queued") ? 2000 : 10000;
  }, items.some((r) => r.state === "running" || r.state === "queued") ? 2000 : 10000);
}
