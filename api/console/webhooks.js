// Webhooks (docs/contract.md §13): endpoints (add, filter, rotate the
// secret and show it once, disable and enable, recover since a time) and
// messages (per-endpoint state, attempts, resend).

import { api, get, post, query } from "./api.js";
import { attempt, field, h, say, table, time } from "./dom.js";
import { deliveryText, showAttempts } from "./messages.js";

const STATES = ["", "pending", "delivered", "failed"];

function eventTypeName(item) {
  return typeof item === "string" ? item : item.name || item.type || item.eventType || String(item);
}

function isoFromLocal(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toISOString();
}

export async function render(root, _args, current) {
  root.append(h("h2", { tabindex: "-1" }, "Webhooks"));
  const [types, endpointsAnswer] = await Promise.all([
    get("/v2/webhook-event-types").then((r) => r.data.map(eventTypeName)),
    get(`/v2/webhook-endpoints${query({ limit: 100 })}`),
  ]);
  if (!current()) return;
  let endpoints = endpointsAnswer.data;
  const secretBox = h("div", { id: "secret-box" });
  const endpointsBox = h("div", { id: "endpoints" });
  const messagesBox = h("div", { id: "messages" });
  const attemptsBox = h("div", { id: "attempts" });

  const showSecret = (endpoint, secret) => {
    const done = h("button", { type: "button", onclick: () => secretBox.replaceChildren() }, "I have stored it");
    secretBox.replaceChildren(h("section", { "aria-labelledby": "secret-title" },
      h("h3", { id: "secret-title" }, `Signing secret of ${endpoint.url}`),
      h("p", {}, "Shown this once: store it now. It cannot be read again."),
      h("p", { class: "secret", id: "secret-value" }, secret), done));
    done.focus();
  };

  // Endpoints: filter, add, rotate, disable/enable, recover.
  const filter = h("input", { id: "endpoint-filter", type: "search", placeholder: "URL, description or event type" });
  const reload = async () => {
    const answer = await get(`/v2/webhook-endpoints${query({ limit: 100 })}`);
    endpoints = answer.data;
    drawEndpoints();
    const chosen = endpointFilter.value;
    endpointFilter.replaceChildren(h("option", { value: "" }, "any"),
      endpoints.map((e) => h("option", { value: e._id, selected: e._id === chosen }, e.url)));
  };
  const drawEndpoints = () => {
    const needle = filter.value.trim().toLowerCase();
    const shown = endpoints.filter((e) => !needle || [e.url, e.description, ...(e.eventTypes || [])].some((x) => (x || "").toLowerCase().includes(needle)));
    endpointsBox.replaceChildren(table(`${shown.length} of ${endpoints.length} endpoint(s)`,
      ["URL", "Description", "Event types", "State", "Actions"],
      shown.map((e) => {
        const since = h("input", { type: "datetime-local", id: `recover-since-${e._id}`, required: true });
        return [
          e.url, e.description || "", (e.eventTypes && e.eventTypes.length ? e.eventTypes.join(", ") : "all"),
          e.disabled ? h("span", { class: "chip bad" }, `disabled${e.disabledReason ? ` (${e.disabledReason})` : ""}`) : h("span", { class: "chip ok" }, "enabled"),
          h("div", { class: "row" },
            h("button", { type: "button", "aria-label": `Rotate the secret of ${e.url}`, onclick: async () => {
              const rotated = await attempt(() => post(`/v2/webhook-endpoints/${e._id}/rotate-secret`));
              if (rotated) {
                say(`The secret of ${e.url} is rotated; the old one keeps working for a day.`);
                showSecret(e, rotated.data.secret);
              }
            } }, "Rotate secret"),
            h("button", { type: "button", "aria-label": `${e.disabled ? "Enable" : "Disable"} ${e.url}`, onclick: async () => {
              const changed = await attempt(() => api("PATCH", `/v2/webhook-endpoints/${e._id}`, { disabled: !e.disabled }));
              if (changed) {
                // Told once the table shows it (its controls drawn anew).
                await attempt(reload);
                say(`${e.url} is ${e.disabled ? "enabled" : "disabled"}.`);
              }
            } }, e.disabled ? "Enable" : "Disable"),
            h("form", { class: "row", "aria-label": `Recover messages for ${e.url}`, onsubmit: async (event) => {
              event.preventDefault();
              const queued = await attempt(() => post(`/v2/webhook-endpoints/${e._id}/recover`, { since: isoFromLocal(since.value) }));
              if (queued) say(`${queued.data.queued} message(s) queued again for ${e.url}.`);
            } }, field("Recover since", since), h("button", { type: "submit" }, "Recover"))),
        ];
      }), { id: "endpoints-table" }));
  };
  filter.addEventListener("input", drawEndpoints);

  const url = h("input", { id: "endpoint-url", type: "url", required: true, size: 40, placeholder: "https://example.com/webhooks" });
  const description = h("input", { id: "endpoint-description", size: 24 });
  const rate = h("input", { id: "endpoint-rate", type: "number", min: 1, size: 6 });
  const boxes = types.map((t) => h("input", { type: "checkbox", id: `event-type-${t}`, value: t }));
  const addForm = h("form", { id: "endpoint-form", "aria-label": "Add an endpoint", onsubmit: async (event) => {
    event.preventDefault();
    const eventTypes = boxes.filter((b) => b.checked).map((b) => b.value);
    const body = { url: url.value.trim(), description: description.value.trim() || undefined, rateLimitPerSecond: rate.value ? Number(rate.value) : undefined, eventTypes: eventTypes.length ? eventTypes : undefined };
    const created = await attempt(() => post("/v2/webhook-endpoints", body));
    if (!created) return;
    say(`Endpoint ${created.data.url} added.`);
    url.value = "";
    description.value = "";
    await attempt(reload);
    showSecret(created.data, created.data.secret);
  } },
  h("div", { class: "row" }, field("URL", url), field("Description", description), field("Rate limit per second", rate, "Optional")),
  h("fieldset", {}, h("legend", {}, "Event types (none checked: all)"),
    h("div", { class: "row" }, boxes.map((b) => h("div", {}, b, h("label", { for: b.id }, ` ${b.value}`))))),
  h("button", { type: "submit", class: "primary" }, "Add endpoint"));

  // Messages: filters, per-endpoint delivery state, attempts, resend.
  const eventType = h("select", { id: "message-type" }, ["", ...types].map((t) => h("option", { value: t }, t || "any")));
  const endpointFilter = h("select", { id: "message-endpoint" }, h("option", { value: "" }, "any"), endpoints.map((e) => h("option", { value: e._id }, e.url)));
  const status = h("select", { id: "message-status" }, STATES.map((s) => h("option", { value: s }, s || "any")));
  const sinceFilter = h("input", { id: "message-since", type: "datetime-local" });
  const urlOf = (id) => endpoints.find((e) => e._id === id)?.url || id;
  let page = 1;
  const showMessages = async () => {
    const params = { page, limit: 20, eventType: eventType.value, endpoint: endpointFilter.value, status: status.value, since: isoFromLocal(sinceFilter.value) };
    const answer = await attempt(() => get(`/v2/webhook-messages${query(params)}`));
    if (!answer || !current()) return;
    const pagination = answer.pagination || { page: 1, pages: 1, total: answer.data.length };
    messagesBox.replaceChildren(
      table(`Messages, page ${pagination.page} of ${Math.max(1, pagination.pages)} (${pagination.total})`,
        ["Occurred", "Type", "Event id", "Deliveries", "Actions"],
        answer.data.map((m) => [
          time(m.occurredAt), m.type, m.eventId,
          h("ul", {}, (m.deliveries || []).map((d) => h("li", {}, deliveryText(d, urlOf)))),
          h("div", { class: "row" },
            h("button", { type: "button", "aria-label": `Attempts of ${m.eventId}`, onclick: () => showAttempts(attemptsBox, m.eventId, urlOf, current) }, "Attempts"),
            h("button", { type: "button", "aria-label": `Resend ${m.eventId}`, onclick: async () => {
              const body = endpointFilter.value ? { endpoint: endpointFilter.value } : {};
              const resent = await attempt(() => post(`/v2/webhook-messages/${encodeURIComponent(m.eventId)}/resend`, body));
              if (resent) say(`${m.eventId}: ${resent.data.queued} delivery(ies) queued again.`);
            } }, "Resend")),
        ]), { id: "messages-table" }),
      h("div", { class: "row" },
        h("button", { type: "button", disabled: pagination.page <= 1, onclick: () => { page -= 1; showMessages(); } }, "Previous page"),
        h("button", { type: "button", disabled: pagination.page >= pagination.pages, onclick: () => { page += 1; showMessages(); } }, "Next page")),
    );
  };
  root.append(
    secretBox,
    h("section", { "aria-labelledby": "endpoints-title" },
      h("h3", { id: "endpoints-title" }, "Endpoints"), addForm,
      h("div", { class: "row" }, field("Filter endpoints", filter)), endpointsBox),
    h("section", { "aria-labelledby": "messages-title" },
      h("h3", { id: "messages-title" }, "Messages"),
      h("form", { class: "row", id: "message-filters", "aria-label": "Filter messages", onsubmit: (event) => { event.preventDefault(); page = 1; showMessages(); } },
        field("Event type", eventType), field("Endpoint", endpointFilter), field("Delivery state", status), field("Since", sinceFilter),
        h("button", { type: "submit" }, "Show messages")),
      messagesBox, attemptsBox),
  );
  drawEndpoints();
  await showMessages();
}
