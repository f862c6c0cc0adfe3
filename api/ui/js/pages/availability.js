// Availability: resources x days as a heatmap of the hours each can work, holidays and maintenance
// marked, from GET /availability (what schedule.generate stored).

import { api } from "../api.js";
import { h, swap } from "../dom.js";
import { number } from "../format.js";
import { drawHeatmap, describeDay, heatmapLegend } from "../heatmap.js";
import { can, code, empty, failure, passOn } from "../ui.js";

const SPANS = [7, 14, 28, 56];
const FIRST_ROWS = 40; // more than a tall screen shows
const ROWS_PER_SLICE = 40;

function today() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function addDays(iso, n) {
  const [y, m, d] = iso.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

export default async function availability(view) {
  view.title("Availability");
  const start = /^\d{4}-\d{2}-\d{2}$/.test(view.query.get("start") || "") ? view.query.get("start") : today();
  const days = SPANS.includes(Number(view.query.get("days"))) ? Number(view.query.get("days")) : 14;
  const resources = (view.query.get("resources") || "").trim();
  const body = h("div", { class: "heatmap-wrap" });

  const startInput = h("input", { type: "date", id: "av-start", value: start, required: true });
  const daysSelect = h("select", { id: "av-days" }, SPANS.map((n) => h("option", { value: n, selected: n === days }, `${n} days`)));
  const refsInput = h("input", { type: "text", id: "av-resources", value: resources, placeholder: "whole plant",
    "aria-describedby": "av-resources-help" });
  const form = h("form", { class: "filters" },
    h("label", { for: "av-start" }, "From"), startInput,
    h("label", { for: "av-days" }, "for"), daysSelect,
    h("label", { for: "av-resources" }, "Resources"), refsInput,
    h("button", { type: "submit", class: "btn" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams({ start: startInput.value || today(), days: daysSelect.value });
    if (refsInput.value.trim()) q.set("resources", refsInput.value.trim());
    view.navigate(`#/availability?${q}`);
  });
  view.main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Availability"), form),
    h("p", { id: "av-resources-help", class: "muted" },
      "Resources: ids or codes, comma-separated; each stands for itself and everything under it."),
    body);

  if (!can(view.me, "availability:read")) {
    swap(body, empty("Your token does not hold the availability:read scope.",
      "Ask an admin for a token with it: ", code("ordo token create --agent NAME --scopes availability:read,...")));
    view.ready("empty");
    return;
  }

  const end = addDays(start, days - 1);
  const tooltip = document.getElementById("tooltip");
  const hide = () => { tooltip.hidden = true; };
  view.signal.addEventListener("abort", hide);
  function onFocus(resource, day, cell) {
    if (!resource) return hide();
    swap(tooltip, h("strong", {}, resource.name && resource.name !== resource.code ? `${resource.code} · ${resource.name}` : resource.code),
      h("p", {}, describeDay(resource, day).split("; ").slice(1).join("; ")),
      h("p", { class: "muted" }, `${day.date} · ${resource.timezone}`));
    tooltip.hidden = false;
    const box = cell.getBoundingClientRect();
    const tip = tooltip.getBoundingClientRect();
    tooltip.style.left = `${Math.min(window.innerWidth - tip.width - 8, Math.max(8, box.left))}px`;
    tooltip.style.top = `${box.bottom + 6 + tip.height < window.innerHeight ? box.bottom + 6 : Math.max(8, box.top - tip.height - 6)}px`;
  }

  let last = "";
  async function load() {
    const report = await api("/availability", {
      query: { start, end, resource_ids: resources || undefined }, signal: view.signal,
    });
    const key = JSON.stringify(report);
    if (key === last) return;
    last = key;
    if (!report.resources.length) {
      swap(body, empty(resources ? "None of these resources requires scheduling." : "No plant yet.",
        "Import one with ", code("ordo resources import FILE"), " or POST /resources/import, then generate its availability."));
      return "empty";
    }
    const total = report.resources.reduce((a, r) => a + r.totals.planned_hours, 0);
    const labelWidth = Math.min(200, Math.max(80, 16 + 7.4 * Math.max(...report.resources.map((r) => r.code.length))));
    const cellWidth = days <= 14 ? 44 : days <= 28 ? 30 : 18;
    const chart = drawHeatmap(report, { cellWidth, labelWidth, onFocus });
    // The first screenful now, the rest in slices after it: the page is usable at once, a big plant
    // fills in below while the reader looks at the top.
    let left = chart.drawRows(FIRST_ROWS);
    const more = () => {
      if (left > 0 && !view.signal.aborted && chart.isConnected) {
        left = chart.drawRows(ROWS_PER_SLICE);
        setTimeout(more, 0);
      }
    };
    swap(body,
      total === 0 ? h("p", { class: "muted", role: "note" },
        "Nothing is planned in these dates: has schedule.generate run for them? (POST /schedules/generate)") : null,
      h("figure", { class: "heatmap-figure" },
        h("div", { class: "heatmap-scroll" }, chart),
        h("figcaption", {}, heatmapLegend(),
          h("p", { class: "muted" }, `${report.resources.length} resources, ${report.start} to ${report.end}: `
            + `${number(report.resources.reduce((a, r) => a + r.totals.operating_hours, 0), 0)} h operating of ${number(total, 0)} h planned.`))));
    setTimeout(more, 0);
    return "ready";
  }

  let state;
  try {
    state = await load();
  } catch (e) {
    passOn(e);
    swap(body, failure(e, "The availability could not be loaded"));
    view.ready("error");
    return;
  }
  view.ready(state);
  // A generation replaces a range at once; a minute is soon enough to show it.
  view.live(load, 60000);
}
