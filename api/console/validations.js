// Validations: search (phone, id, status) and one validation's timeline:
// created, every send (channel, provider, message id), receipts, failovers,
// attempts, the outcome, its webhook attempts (the flow's webhookUrl) and
// its webhook endpoint messages, each with its attempts a click away.

import { get, query } from "./api.js";
import { append, attempt, field, h, table, time, when } from "./dom.js";
import { deliveryText, showAttempts } from "./messages.js";

const STATUSES = ["", "new", "sent", "validated", "failed"];
const PAGE_SIZE = 20;

export async function render(root, args, current) {
  if (args[0]) return timeline(root, args[0], current);
  root.append(h("h2", { tabindex: "-1" }, "Validations"));
  const countryCode = h("input", { id: "search-country", name: "countryCode", placeholder: "+507", size: 6, inputmode: "tel" });
  const phone = h("input", { id: "search-phone", name: "phone", inputmode: "tel", size: 16 });
  const id = h("input", { id: "search-id", name: "id", size: 26, spellcheck: "false" });
  const status = h("select", { id: "search-status", name: "status" },
    STATUSES.map((s) => h("option", { value: s }, s || "any")));
  const results = h("div", { id: "validation-results" });
  let page = 1;
  const search = async () => {
    const wanted = id.value.trim();
    if (wanted) {
      location.hash = `#/validations/${encodeURIComponent(wanted)}`;
      return;
    }
    const params = { page, limit: PAGE_SIZE, status: status.value, phone: phone.value.trim(), countryCode: countryCode.value.trim() };
    const answer = await attempt(() => get(`/v2/phone-validations${query(params)}`));
    if (!answer || !current()) return;
    const { pagination } = answer;
    results.replaceChildren(
      table(`Validations, page ${pagination.page} of ${Math.max(1, pagination.pages)} (${pagination.total} found)`,
        ["Created", "Phone", "Status", "Type", "Channel", "Id"],
        answer.data.map((v) => [
          time(v.createdAt), `${v.countryCode} ${v.phone}`, v.status + (v.failedReason ? ` (${v.failedReason})` : ""),
          v.type, v.providerConfirmation?.channel || v.phoneGateway || "",
          h("a", { href: `#/validations/${v._id}`, "aria-label": `Timeline of ${v._id}` }, v._id),
        ]), { id: "validations-table" }),
      h("div", { class: "row" },
        h("button", { type: "button", disabled: pagination.page <= 1, onclick: () => { page -= 1; search(); } }, "Previous page"),
        h("button", { type: "button", disabled: pagination.page >= pagination.pages, onclick: () => { page += 1; search(); } }, "Next page")),
    );
  };
  const form = h("form", { class: "row", id: "validation-search", role: "search", "aria-label": "Search validations",
    onsubmit: (event) => { event.preventDefault(); page = 1; search(); } },
    field("Country code", countryCode), field("Phone", phone), field("Validation id", id, "Opens its timeline"),
    field("Status", status), h("button", { type: "submit", class: "primary" }, "Search"));
  root.append(form, results);
  await search();
}

/** The validation's story, oldest first; `attemptsOf` opens a message's attempts. */
function events(v, deliveries, messages, urlOf, attemptsOf) {
  const items = [];
  const add = (at, text, tone, extra) => items.push({ at, text, tone, extra });
  add(v.createdAt, `Created: ${v.type} for ${v.countryCode} ${v.phone}, gateway ${v.phoneGateway}${v.language ? `, language ${v.language}` : ""}, expires ${when(v.expiresAt)}.`);
  const pc = v.providerConfirmation;
  if (pc) {
    const history = Array.isArray(pc.history) && pc.history.length ? pc.history : (pc.sent ? [pc] : []);
    history.forEach((send, i) => {
      if (i > 0) add(send.sentAt, `Failover to ${send.channel}${i === history.length - 1 && pc.failover ? ` (${pc.failover})` : ""}.`, "bad");
      const id = send.messageId ? `message id ${send.messageId}` : "no message id";
      add(send.sentAt, `Sent by ${send.channel || pc.channel || "?"} via ${send.provider || pc.provider}, ${id}; delivery status ${send.deliveryStatus || "unknown"}.`,
        send.deliveryStatus === "failed" ? "bad" : undefined);
    });
    if (pc.sent === false && pc.status === "ok") add(pc.sentAt || v.updatedAt, `Nothing sent on purpose (provider ${pc.provider}).`);
    if (pc.status === "error") {
      add(pc.sentAt || v.updatedAt, `Sending failed after ${pc.attempts ?? "?"} attempt(s) with ${pc.provider}: ${pc.errorCode ? `error ${pc.errorCode} ` : ""}${pc.error || ""}`.trim(), "bad");
    }
    if (pc.deliveryStatus && pc.sent) {
      const receipt = `Receipt: ${pc.deliveryStatus}${pc.deliveryErrorCode ? ` (error ${pc.deliveryErrorCode})` : ""}${pc.segments ? `; ${pc.segments} segment(s), ${pc.encoding}` : ""}.`;
      add(pc.deliveredAt || pc.sentAt, receipt, ["undelivered", "failed"].includes(pc.deliveryStatus) ? "bad" : "good");
    }
  }
  const closedAt = v.status === "validated" ? v.validatedAt : v.status === "failed" ? v.updatedAt : null;
  add(closedAt, `Code attempts: ${v.attempts} of ${v.maxAttempts}.`, v.attempts ? "bad" : undefined);
  if (v.status === "validated") add(v.validatedAt, "Outcome: validated.", "good");
  else if (v.status === "failed") add(v.updatedAt, `Outcome: failed (${v.failedReason || "no reason"}).`, "bad");
  else add(null, `Outcome: still open (${v.status}).`);
  for (const d of deliveries) {
    const answer = d.statusCode ? `HTTP ${d.statusCode}` : (d.error || "no answer");
    add(d.attemptedAt, `Webhook ${d.type} attempt ${d.attempt} to ${d.url}: ${answer}, ${d.outcome.replace(/_/g, " ")}${d.latencyMs != null ? ` in ${d.latencyMs} ms` : ""}.`,
      d.outcome === "delivered" ? "good" : "bad");
  }
  for (const m of messages) {
    const states = m.deliveries || [];
    const tone = states.some((d) => d.status === "failed") ? "bad"
      : states.length && states.every((d) => d.status === "delivered") ? "good" : undefined;
    add(m.occurredAt, `Endpoint message ${m.type} (event ${m.eventId}): ${states.map((d) => deliveryText(d, urlOf)).join("; ") || "no delivery"}. `, tone,
      h("button", { type: "button", "aria-label": `Attempts of ${m.eventId}`, onclick: () => attemptsOf(m.eventId) }, "Attempts"));
  }
  // Timed entries in order; untimed ones (attempts, an open outcome) last.
  return items
    .map((item, i) => ({ ...item, i }))
    .sort((a, b) => (a.at && b.at ? Date.parse(a.at) - Date.parse(b.at) || a.i - b.i : a.at ? -1 : b.at ? 1 : a.i - b.i));
}

async function timeline(root, id, current) {
  root.append(h("p", {}, h("a", { href: "#/validations" }, "Back to the search")));
  const heading = h("h2", { tabindex: "-1" }, `Validation ${id}`);
  root.append(heading);
  const unread = (error) => ({ data: [], error });
  const [validation, deliveries, messages, endpoints] = await Promise.all([
    get(`/v2/phone-validations/${encodeURIComponent(id)}`),
    get(`/v2/webhook-deliveries${query({ validation: id, limit: 100 })}`).catch(unread),
    get(`/v2/webhook-messages${query({ validation: id, limit: 100 })}`).catch(unread),
    get(`/v2/webhook-endpoints${query({ limit: 100 })}`).catch(unread),
  ]);
  if (!current()) return;
  const v = validation.data;
  const urlOf = (endpoint) => endpoints.data.find((e) => e._id === endpoint)?.url || endpoint;
  const attemptsBox = h("div", { id: "attempts" });
  const attemptsOf = (eventId) => showAttempts(attemptsBox, eventId, urlOf, current);
  append(root, [
    h("p", {}, `Status `, h("strong", { id: "validation-status" }, v.status), ` · project ${v.project} · flow ${v.projectFlow}`),
    h("h3", {}, "Timeline"),
    h("ol", { class: "timeline", id: "timeline" },
      events(v, deliveries.data, messages.data, urlOf, attemptsOf)
        .map((e) => h("li", { class: e.tone }, e.at ? time(e.at) : null, e.text, e.extra))),
    deliveries.error ? h("p", { class: "muted" }, `Its webhook attempts could not be read: ${deliveries.error.message}`) : null,
    messages.error ? h("p", { class: "muted" }, `Its endpoint messages could not be read: ${messages.error.message}`) : null,
    attemptsBox,
  ]);
  heading.focus();
}
