// Overview: the last 30 days (UTC) from GET /v2/phone-validations/stats,
// by day (a chart and its table), by channel and by country.

import { get, query } from "./api.js";
import { dailyChart } from "./chart.js";
import { h, percent, table } from "./dom.js";

const DAYS = 30;

function range() {
  const now = new Date();
  const from = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - (DAYS - 1)));
  return { from: from.toISOString(), to: now.toISOString() };
}

function stats(groupBy, { from, to }) {
  return get(`/v2/phone-validations/stats${query({ groupBy, from, to })}`).then((r) => r.data);
}

const COLUMNS = [
  { label: "Created", num: true }, { label: "Sent", num: true }, { label: "Delivered", num: true },
  { label: "Validated", num: true }, { label: "Failed", num: true }, { label: "Blocked", num: true },
  { label: "Conversion", num: true },
];
const cells = (r) => [r.created, r.sent, r.delivered, r.validated, r.failed, r.blocked, percent(r.conversionRate)];

export async function render(root, _args, current) {
  root.append(h("h2", { tabindex: "-1" }, "Overview"), h("p", { class: "muted" }, `The last ${DAYS} days, UTC.`));
  const span = range();
  const [byDay, byChannel, byCountry] = await Promise.all([
    stats("day", span), stats("channel", span), stats("country", span),
  ]);
  if (!current()) return;
  const known = new Map(byDay.map((row) => [row.key, row]));
  const days = [];
  const start = new Date(span.from);
  for (let i = 0; i < DAYS; i++) {
    const key = new Date(start.getTime() + i * 86400000).toISOString().slice(0, 10);
    days.push(known.get(key) || { key, created: 0, sent: 0, delivered: 0, validated: 0, failed: 0, blocked: 0, conversionRate: 0 });
  }
  const sum = (field) => days.reduce((n, d) => n + (d[field] || 0), 0);
  const sent = sum("sent"), validated = sum("validated"), blocked = sum("blocked");
  const card = (id, label, value) => h("div", {}, h("dt", {}, label), h("dd", { id }, value));
  root.append(
    h("dl", { class: "cards", "aria-label": "Totals" },
      card("total-sent", "Sent", String(sent)),
      card("total-validated", "Validated", String(validated)),
      card("total-conversion", "Conversion", percent(sent ? validated / sent : 0)),
      card("total-blocked", "Blocked", String(blocked))),
    h("h3", {}, "Per day"),
    dailyChart(days, "daily-chart"),
    h("details", {},
      h("summary", {}, "Per-day numbers (table)"),
      table("Per day", [{ label: "Day" }, ...COLUMNS], days.map((d) => [d.key, ...cells(d)]), { id: "per-day" })),
    h("div", { class: "scroll" },
      table("Per channel", [{ label: "Channel" }, ...COLUMNS], byChannel.map((r) => [r.key, ...cells(r)]), { id: "per-channel" })),
    h("div", { class: "scroll" },
      table("Per country", [{ label: "Country" }, ...COLUMNS], byCountry.map((r) => [r.key, ...cells(r)]), { id: "per-country" })),
  );
}
