// A webhook endpoint message's deliveries and attempts (docs/contract.md
// §13), as the Webhooks page and a validation's timeline both show them.

import { get, query } from "./api.js";
import { attempt, table, time, when } from "./dom.js";

/** One endpoint's delivery of a message, in words. */
export function deliveryText(d, urlOf) {
  return `${urlOf(d.endpoint)}: ${d.status}, ${d.attempts} attempt(s)`
    + (d.lastStatusCode ? `, last HTTP ${d.lastStatusCode}` : "")
    + (d.lastAttemptAt ? `, last ${when(d.lastAttemptAt)}` : "")
    + (d.status === "pending" && d.nextAttemptAt ? `, next ${when(d.nextAttemptAt)}` : "");
}

/** Reads a message's attempts and shows them, newest first, in `box`. */
export async function showAttempts(box, eventId, urlOf, current) {
  const answer = await attempt(() => get(`/v2/webhook-messages/${encodeURIComponent(eventId)}/attempts${query({ limit: 100 })}`));
  if (!answer || !current()) return;
  box.replaceChildren(table(`Attempts of ${eventId}`, ["At", "Endpoint", "Answer", { label: "Latency (ms)", num: true }, "Response"],
    answer.data.map((a) => [time(a.attemptedAt), a.url || urlOf(a.endpoint), a.statusCode ? `HTTP ${a.statusCode}` : (a.error || "no answer"), a.latencyMs ?? "", a.responseBody || ""]),
    { id: "attempts-table" }));
}
