// A per-day bar chart drawn as inline SVG with DOM calls, with a title and
// a description for assistive technology (the page shows the same numbers
// in a table beside it).

import { h, svg } from "./dom.js";

const SERIES = ["sent", "validated", "blocked"];

/** days: [{key: "YYYY-MM-DD", sent, validated, blocked}] oldest first. */
export function dailyChart(days, idBase) {
  const width = 760, height = 220, left = 40, bottom = 28, top = 10;
  const plotW = width - left - 10, plotH = height - top - bottom;
  const max = Math.max(1, ...days.flatMap((d) => SERIES.map((s) => d[s] || 0)));
  const slot = plotW / Math.max(1, days.length);
  const bar = Math.max(1, (slot - 4) / SERIES.length);
  const totals = Object.fromEntries(SERIES.map((s) => [s, days.reduce((n, d) => n + (d[s] || 0), 0)]));
  const first = days[0]?.key ?? "", last = days[days.length - 1]?.key ?? "";
  const title = svg("title", { id: `${idBase}-title`, text: `Codes sent, validated and blocked per day, ${first} to ${last}` });
  const desc = svg("desc", {
    id: `${idBase}-desc`,
    text: `${days.length} days. In total ${totals.sent} sent, ${totals.validated} validated, ${totals.blocked} blocked; the busiest day had ${max}. The table below lists every day.`,
  });
  const chart = svg("svg", {
    class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-labelledby": `${idBase}-title ${idBase}-desc`, id: idBase,
  }, title, desc);
  chart.append(svg("line", { class: "axis", x1: left, y1: top + plotH, x2: width - 10, y2: top + plotH }));
  chart.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotH }));
  chart.append(svg("text", { x: 4, y: top + 8, text: String(max) }));
  chart.append(svg("text", { x: 4, y: top + plotH, text: "0" }));
  days.forEach((day, i) => {
    SERIES.forEach((series, j) => {
      const value = day[series] || 0;
      const barH = (value / max) * plotH;
      const rect = svg("rect", {
        class: `bar-${series}`, x: (left + i * slot + 2 + j * bar).toFixed(1), y: (top + plotH - barH).toFixed(1),
        width: bar.toFixed(1), height: barH.toFixed(1),
      }, svg("title", { text: `${day.key}: ${value} ${series}` }));
      chart.append(rect);
    });
    if (i % 5 === 0 || i === days.length - 1) {
      chart.append(svg("text", { x: (left + i * slot).toFixed(1), y: height - 8, text: day.key.slice(5) }));
    }
  });
  const legend = h("ul", { class: "legend", "aria-hidden": "true" },
    SERIES.map((s) => h("li", {}, h("span", { class: `swatch ${s}` }), s)));
  return h("figure", {}, chart, legend);
}
