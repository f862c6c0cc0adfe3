// Availability as a heatmap: one row per resource, one column per day, each cell shaded by the
// hours the resource can work that day; holidays, maintenance and days with nothing planned marked
// by pattern and letter as well as colour. Pure drawing, like gantt.js.

import { h, s } from "./dom.js";
import { number } from "./format.js";

const ROW = 28;
const HEAD = 46;
const TOTAL = 74;
const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function parseDate(iso) {
  const [y, m, d] = iso.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d));
}

/** Hours -> a blue of the same hue, darker for more hours (0 h is white, 24 h the darkest). */
export function shade(hours) {
  const t = Math.max(0, Math.min(1, hours / 24));
  const light = Math.round(97 - t * 62);
  return `hsl(214 75% ${light}%)`;
}

function kindOf(day) {
  if (day.holiday || day.status === "holiday") return "holiday";
  if (day.status === "maintenance" || day.status === "down") return "maintenance";
  if (day.maintenance_hours > 0 || day.other_down_hours > 0) return "part-maintenance";
  if (day.status === "off" || day.planned_hours === 0) return "off";
  return "operating";
}

export function describeDay(resource, day) {
  const date = parseDate(day.date);
  const parts = [`${resource.code}, ${DAYS[date.getUTCDay()]} ${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]}`];
  if (day.holiday) parts.push(`holiday: ${day.holiday}`);
  parts.push(`${number(day.operating_hours, 1)} h operating of ${number(day.planned_hours, 1)} h planned`);
  if (day.maintenance_hours) parts.push(`${number(day.maintenance_hours, 1)} h maintenance`);
  if (day.other_down_hours) parts.push(`${number(day.other_down_hours, 1)} h down`);
  if (day.holiday_hours) parts.push(`${number(day.holiday_hours, 1)} h lost to the holiday`);
  return parts.join("; ");
}

/**
 * The heatmap of GET /availability's resources; cellWidth in px. onFocus(resource, day, cell).
 * Rows appear as the caller draws them: svg.drawRows(n) adds the next n and returns how many remain.
 */
export function drawHeatmap(report, { cellWidth, labelWidth, onFocus }) {
  const resources = report.resources;
  const dates = resources.length ? resources[0].days.map((d) => d.date) : [];
  const width = labelWidth + dates.length * cellWidth + TOTAL;
  const height = HEAD + resources.length * ROW + 4;
  const svg = s("svg", {
    class: "heatmap", width, height, viewBox: `0 0 ${width} ${height}`, role: "grid",
    "aria-label": `Availability of ${resources.length} resources over ${dates.length} days`,
  });
  svg.append(s("defs", {},
    s("pattern", { id: "hm-holiday", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      s("rect", { width: 6, height: 6, fill: "#ede9fe" }), s("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#7c3aed", "stroke-width": 2 })),
    s("pattern", { id: "hm-maintenance", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(-45)" },
      s("rect", { width: 6, height: 6, fill: "#ffedd5" }), s("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#c2410c", "stroke-width": 2 }))));

  // Column heads: weekday and day of month; the month where it starts or changes.
  const head = s("g", { class: "hm-head", role: "row" });
  head.append(s("text", { x: 6, y: HEAD - 8, class: "axis-title" }, "Resource"));
  let lastMonth = null;
  dates.forEach((iso, i) => {
    const d = parseDate(iso);
    const x = labelWidth + i * cellWidth;
    const weekend = d.getUTCDay() === 0 || d.getUTCDay() === 6;
    if (d.getUTCMonth() !== lastMonth) {
      head.append(s("text", { x: x + 2, y: 12, class: "axis-day" }, `${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}`));
      lastMonth = d.getUTCMonth();
    }
    head.append(s("text", { x: x + cellWidth / 2, y: HEAD - 22, class: weekend ? "hm-dow hm-weekend" : "hm-dow", "text-anchor": "middle", role: "columnheader" },
      cellWidth >= 26 ? DAYS[d.getUTCDay()] : DAYS[d.getUTCDay()][0]));
    head.append(s("text", { x: x + cellWidth / 2, y: HEAD - 8, class: "hm-date", "text-anchor": "middle" }, String(d.getUTCDate())));
  });
  head.append(s("text", { x: labelWidth + dates.length * cellWidth + 8, y: HEAD - 8, class: "axis-title" }, "Hours"));
  svg.append(head);

  const body = s("g", { class: "hm-body" });
  const cells = resources.map(() => null);
  // Rows are drawn in slices: the first screenful at once, the rest after it (see drawRows).
  const drawRow = (resource, r) => {
    const y = HEAD + r * ROW;
    const row = s("g", { class: "hm-row", role: "row", dataset: { resource: resource.code } });
    row.append(s("text", { x: 6, y: y + ROW / 2 + 4, class: "lane-label", role: "rowheader" }, resource.code,
      s("title", {}, `${resource.name || resource.code} (${resource.path}, ${resource.timezone})`)));
    const rowCells = [];
    resource.days.forEach((day, c) => {
      const x = labelWidth + c * cellWidth;
      const kind = kindOf(day);
      const cell = s("g", {
        class: `hm-cell hm-${kind}`, role: "gridcell", tabindex: r === 0 && c === 0 ? 0 : -1,
        "aria-label": describeDay(resource, day),
        dataset: { resource: resource.code, date: day.date, kind, row: r, col: c, ...(day.holiday ? { holiday: day.holiday } : {}) },
      });
      const fill = kind === "holiday" ? "url(#hm-holiday)" : kind === "maintenance" ? "url(#hm-maintenance)" : shade(day.operating_hours);
      cell.append(s("rect", { x: x + 1, y: y + 1, width: cellWidth - 2, height: ROW - 2, rx: 2, fill, class: "hm-box" }));
      const mark = kind === "holiday" ? "H" : kind === "maintenance" ? "M" : kind === "off" ? "" : cellWidth >= 30 ? number(day.operating_hours, 0) : "";
      if (mark) {
        const dark = kind === "operating" || kind === "part-maintenance" ? day.operating_hours > 11 : false;
        cell.append(s("text", { x: x + cellWidth / 2, y: y + ROW / 2 + 4, "text-anchor": "middle", class: dark ? "hm-mark hm-mark-dark" : "hm-mark" }, mark));
      }
      if (kind === "part-maintenance") {
        cell.append(s("path", { d: `M${x + cellWidth - 10},${y + 1} h9 v9 z`, class: "hm-corner", "aria-hidden": "true" }));
      }
      row.append(cell);
      rowCells.push(cell);
    });
    row.append(s("text", { x: labelWidth + resource.days.length * cellWidth + 8, y: y + ROW / 2 + 4, class: "hm-total" },
      number(resource.totals.operating_hours, 0)));
    return [row, rowCells];
  };
  let drawn = 0;
  /** Draw up to `count` more rows; returns how many are still to draw. */
  svg.drawRows = (count) => {
    const frag = document.createDocumentFragment();
    const end = Math.min(resources.length, drawn + count);
    for (; drawn < end; drawn += 1) {
      const [row, rowCells] = drawRow(resources[drawn], drawn);
      frag.append(row);
      cells[drawn] = rowCells;
    }
    body.append(frag);
    return resources.length - drawn;
  };
  svg.append(body);

  const find = (g) => resources[Number(g.dataset.row)].days[Number(g.dataset.col)];
  body.addEventListener("pointerover", (e) => {
    const g = e.target.closest("g.hm-cell");
    if (g) onFocus(resources[Number(g.dataset.row)], find(g), g);
  });
  body.addEventListener("pointerleave", () => onFocus(null));
  body.addEventListener("focusin", (e) => {
    const g = e.target.closest("g.hm-cell");
    if (g) onFocus(resources[Number(g.dataset.row)], find(g), g);
  });
  body.addEventListener("focusout", () => onFocus(null));
  body.addEventListener("keydown", (e) => {
    const g = e.target.closest("g.hm-cell");
    if (!g) return;
    let r = Number(g.dataset.row);
    let c = Number(g.dataset.col);
    if (e.key === "ArrowRight") c += 1;
    else if (e.key === "ArrowLeft") c -= 1;
    else if (e.key === "ArrowDown") r += 1;
    else if (e.key === "ArrowUp") r -= 1;
    else if (e.key === "Home") c = 0;
    else if (e.key === "End") c = dates.length - 1;
    else return;
    e.preventDefault();
    const next = cells[r] && cells[r][c];
    if (next) {
      g.setAttribute("tabindex", "-1");
      next.setAttribute("tabindex", "0");
      next.focus();
      next.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  });
  return svg;
}

export function heatmapLegend() {
  return h("ul", { class: "legend-keys heatmap-legend", "aria-label": "Key" },
    [0, 8, 16, 24].map((hours) => h("li", {}, h("span", { class: "key", style: `background:${shade(hours)}`, "aria-hidden": "true" }), `${hours} h`)),
    h("li", {}, h("span", { class: "key key-holiday", "aria-hidden": "true" }), "H holiday"),
    h("li", {}, h("span", { class: "key key-maintenance", "aria-hidden": "true" }), "M maintenance or down all day"),
    h("li", {}, h("span", { class: "key key-corner", "aria-hidden": "true" }), "part of the day under maintenance"),
    h("li", { class: "muted" }, "Numbers: hours the resource can work (planned, less holidays and exceptions)."));
}

export const HEATMAP_LAYOUT = { ROW, HEAD };
