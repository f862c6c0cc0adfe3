// Overview: what happened in the last hour (the caller's runs, every agent's for admins), what is
// running now, and the latest failures. Refreshes while shown.

import { api } from "../api.js";
import { h, s, swap } from "../dom.js";
import { number } from "../format.js";
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
  const hour = h("section", { class: "card", "aria-labelledby": "hour-h" });
  const running = h("section", { class: "card", "aria-labelledby": "running-h" });
  const failures = h("section", { class: "card", "aria-labelledby": "failures-h" });
  const who = view.me.admin ? "all agents" : `agent ${view.me.agent.name}`;
  view.main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), h("p", { class: "muted" }, `Runs of ${who}`)),
    h("div", { class: "cards" }, hour, running), failures);

  async function load() {
    const since = new Date(Date.now() - 3600_000).toISOString();
    const [recent, now, bad] = await Promise.all([
      api("/runs", { query: { since, limit: SAMPLE }, signal: view.signal }),
      api("/runs", { query: { state: ["running", "queued"], limit: 10 }, signal: view.signal }),
      api("/runs", { query: { state: ["dead", "failed"], limit: 5 }, signal: view.signal }),
    ]);
    const counts = {};
    for (const r of recent.items) counts[r.state] = (counts[r.state] || 0) + 1;
    const total = recent.items.length;
    const more = Boolean(recent.next_cursor);
    swap(hour,
      h("h2", { id: "hour-h" }, "Last hour"),
      total ? [
        h("p", { class: "big" }, `${number(total)}${more ? "+" : ""} run${total === 1 ? "" : "s"}`),
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
