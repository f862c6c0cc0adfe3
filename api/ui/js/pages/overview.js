// Overview: for admins the whole system from GET /status (queue depth and lag, throughput and
// outcomes over the last hour, workers, the scheduler leader, webhook breakers); for every agent its
// own runs of the last hour by outcome, what is running now, and the latest failures. Refreshes
// while shown.

import { api } from "../api.js";
import { h, s, swap } from "../dom.js";
import { duration, number, relative } from "../format.js";
import { empty, failure, passOn } from "../ui.js";
import { runTable } from "./runs.js";

const SAMPLE = 200; // runs counted per refresh: one page of GET /runs
const OUTCOMES = ["succeeded", "failed", "dead", "canceled", "skipped", "running", "queued"];

/** One horizontal bar split by outcome, with the numbers written out beside it. */
function outcomeBar(counts, total) {
  const width = 600;
  let x = 0;
  const bar = s("svg", { class: "outcomes-bar", viewBox: `0 0 ${width} 18`, preserveAspectRatio: "none", "aria-hidden": "true" });
  for (const state of OUTCOMES) {
    const n = counts[state] || 0;
    if (!n) continue;
    const w = (n / total) * width;
    bar.append(s("rect", { x, y: 0, width: w, height: 18, class: `fill-${state}` }));
    x += w;
  }
  return bar;
}

export default async function overview(view) {
  view.title("Overview");
  const system = h("div", { class: "cards" });
  const hour = h("section", { class: "card", "aria-labelledby": "hour-h" });
  const running = h("section", { class: "card", "aria-labelledby": "running-h" });
  const failures = h("section", { class: "card", "aria-labelledby": "failures-h" });
  const who = view.me.admin ? "all agents" : `agent ${view.me.agent.name}`;
  view.main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), h("p", { class: "muted" }, `Runs of ${who}`)),
    view.me.admin ? system : "", h("div", { class: "cards" }, hour, running), failures);

  async function load() {
    const since = new Date(Date.now() - 3600_000).toISOString();
    const [status, recent, now, bad] = await Promise.all([
      view.me.admin ? api("/status", { signal: view.signal }) : null,
      api("/runs", { query: { since, limit: SAMPLE }, signal: view.signal }),
      api("/runs", { query: { state: ["running", "queued"], limit: 10 }, signal: view.signal }),
      api("/runs", { query: { state: ["dead", "failed"], limit: 5 }, signal: view.signal }),
    ]);
    let counts = {};
    let total;
    let more = false;
    if (status) {
      // Every attempt that ended in the last hour, counted by the database: exact at any volume.
      counts = status.runs_last_hour;
      total = Object.values(counts).reduce((a, b) => a + b, 0);
      swap(system, ...systemCards(status));
    } else {
      for (const r of recent.items) counts[r.state] = (counts[r.state] || 0) + 1;
      total = recent.items.length;
      more = Boolean(recent.next_cursor);
    }
    swap(hour,
      h("h2", { id: "hour-h" }, "Last hour"),
      total ? [
        h("p", { class: "big" }, `${number(total)}${more ? "+" : ""} ${status ? "attempt" : "run"}${total === 1 ? "" : "s"}`,
          h("span", { class: "muted throughput" }, ` · ${number(total / 60, 1)} per minute`)),
        outcomeBar(counts, total),
        h("ul", { class: "outcomes", "aria-label": "Runs by outcome" }, OUTCOMES.filter((st) => counts[st]).map((st) =>
          h("li", { dataset: { outcome: st } }, h("span", { class: `dot fill-${st}`, "aria-hidden": "true" }),
            `${st}: ${number(counts[st])}`))),
        more ? h("p", { class: "muted" }, `Outcomes of the latest ${SAMPLE}.`) : null,
      ] : empty("No runs in the last hour.", "Start one from the ", h("a", { href: "#/tasks" }, "Tasks"), " page."));
    swap(running, h("h2", { id: "running-h" }, "Running and waiting"),
      now.items.length ? runTable(now.items) : empty("Nothing running or waiting."));
    swap(failures, h("h2", { id: "failures-h" }, "Latest failures"),
      bad.items.length ? runTable(bad.items) : empty("No failed or dead runs."));
    return now.items.length ? 2000 : 5000;
  }

  try {
    await load();
  } catch (e) {
    passOn(e);
    view.main.append(failure(e, "The overview could not be loaded"));
    view.ready("error");
    return;
  }
  view.ready();
  view.live(load, 5000);
}

/** The admin's view of the system: queue, workers, scheduler and webhooks, from GET /status. */
function systemCards(st) {
  const q = st.queue;
  const w = st.workers;
  const lagging = q.due > 0 && q.lag_s > 60;
  return [
    h("section", { class: "card", "aria-labelledby": "queue-h", dataset: { card: "queue" } },
      h("h2", { id: "queue-h" }, "Queue"),
      h("p", { class: lagging ? "big warn" : "big" }, `${number(q.due)} due`,
        h("span", { class: "muted" }, ` · ${number(q.leased)} running`)),
      h("p", {}, q.due ? `The oldest due run has waited ${duration(q.lag_s * 1000)}.` : "Nothing is waiting for a worker."),
      h("ul", { class: "outcomes", "aria-label": "Due runs by priority band" },
        ["high", "normal", "low"].filter((b) => b in q.due_by_priority_band).map((band) => h("li", {},
          `${band}: ${number(q.due_by_priority_band[band])}`,
          q.due_by_priority_band[band] ? h("span", { class: "muted" }, ` (lag ${duration((q.lag_s_by_priority_band[band] || 0) * 1000)})`) : null)))),
    h("section", { class: "card", "aria-labelledby": "workers-h", dataset: { card: "workers" } },
      h("h2", { id: "workers-h" }, "Workers"),
      h("p", { class: w.alive ? "big" : "big warn" }, `${number(w.alive)} alive`,
        h("span", { class: "muted" }, ` · ${number(w.busy)} of ${number(w.slots)} slots busy`)),
      w.lost ? h("p", { class: "error" }, `${w.lost} worker${w.lost > 1 ? "s" : ""} went quiet in the last hour without a clean stop.`) : null,
      w.processes.length ? h("table", { class: "grid compact" },
        h("caption", { class: "visually-hidden" }, "Workers heard from in the last hour"),
        h("thead", {}, h("tr", {}, ["Worker", "State", "Busy", "Last seen"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, w.processes.map((p) => h("tr", {},
          h("th", { scope: "row" }, `${p.host}:${p.pid}`),
          h("td", { "data-label": "State" }, p.alive ? "alive" : p.state),
          h("td", { "data-label": "Busy" }, `${p.busy}/${p.concurrency}`),
          h("td", { "data-label": "Last seen" }, relative(p.last_seen_at))))))
        : empty("No worker in the last hour.", "Start one with `ordo worker` or `ordo up`.")),
    h("section", { class: "card", "aria-labelledby": "scheduler-h", dataset: { card: "scheduler" } },
      h("h2", { id: "scheduler-h" }, "Scheduler"),
      st.scheduler.leader
        ? [h("p", { class: st.scheduler.ok ? "big" : "big warn" }, st.scheduler.ok ? "Leading" : "Not ticking"),
          h("p", {}, `Leader ${st.scheduler.leader}`, st.scheduler.leader_since ? `, since ${relative(st.scheduler.leader_since)}` : "",
            st.scheduler.last_tick_age_s !== null ? `; last tick ${duration(st.scheduler.last_tick_age_s * 1000)} ago.` : ".")]
        : empty("No scheduler has ever led.", "Start `ordo scheduler` or `ordo up`."),
      h("p", { class: st.webhooks.breakers_open.length ? "error" : "muted", dataset: { webhooks: "" } },
        st.webhooks.breakers_open.length
          ? `Webhook breakers open: ${st.webhooks.breakers_open.join(", ")}`
          : `Webhook endpoints: ${Object.entries(st.webhooks.endpoints_by_state).filter(([, n]) => n).map(([k, n]) => `${n} ${k.replace("_", " ")}`).join(", ") || "none registered"}.`)),
  ];
}
