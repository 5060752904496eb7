// Flows: a flow's settings (shown, and the common ones edited), and its
// templates per channel and locale with a live preview and segment count:
// the draft measured here as it is typed, the saved text rendered by
// POST /v2/project-flows/{id}/preview.

import { api, get, post, query } from "./api.js";
import { attempt, field, h, say } from "./dom.js";
import { segments } from "./sms.js";

const EDITABLE = [
  ["phoneGateway", "Gateway", ["sms", "whatsapp", "voice", "none"]],
  ["otpLength", "Code length", "number"],
  ["otpExpiresInSeconds", "Code lifetime (seconds)", "number"],
  ["maxAttempts", "Wrong codes allowed", "number"],
  ["resendCooldownSeconds", "Resend cooldown (seconds)", "number"],
  ["maxSendsPerHour", "Codes per phone per hour", "number"],
  ["language", "Language (BCP 47, empty for the number's country)", "text"],
  ["fraudGuard", "Fraud guard", ["standard", "max", "off"]],
];
const SAMPLE = "1234567890";

export async function render(root, args, current) {
  root.append(h("h2", { tabindex: "-1" }, "Flows"));
  const [flows, projects] = await Promise.all([get(`/v2/project-flows${query({ limit: 100 })}`), get(`/v2/projects${query({ limit: 100 })}`)]);
  if (!current()) return;
  const names = new Map(projects.data.map((p) => [p._id, p.name]));
  if (!flows.data.length) {
    root.append(h("p", {}, "No flows yet: create one with POST /v2/project-flows."));
    return;
  }
  const chosen = flows.data.find((f) => f._id === args[0]) || flows.data[0];
  const picker = h("select", { id: "flow-picker", onchange: () => { location.hash = `#/flows/${picker.value}`; } },
    flows.data.map((f) => h("option", { value: f._id, selected: f._id === chosen._id }, `${names.get(f.project) || f.project} · ${f.type} · ${f._id}`)));
  const detail = h("div", { id: "flow-detail" });
  root.append(h("div", { class: "row" }, field("Flow", picker)), detail);
  show(detail, chosen, names.get(chosen.project) || "", current);
}

function show(detail, flow, appName, current) {
  const settings = h("section", { "aria-labelledby": "settings-title" });
  const templates = h("section", { "aria-labelledby": "templates-title" });
  detail.replaceChildren(h("div", { class: "grid2" }, settings, templates));
  renderSettings(settings, flow, (updated) => show(detail, updated, appName, current));
  renderTemplates(templates, flow, appName, current);
}

function renderSettings(section, flow, updated) {
  const phone = flow.phone || {};
  const shown = Object.entries(phone).filter(([key]) => key !== "templates");
  const inputs = EDITABLE.map(([key, label, kind]) => {
    const id = `setting-${key}`;
    const control = Array.isArray(kind)
      ? h("select", { id }, kind.map((v) => h("option", { value: v, selected: phone[key] === v }, v)))
      : h("input", { id, type: kind, value: phone[key] ?? "", size: 10 });
    return [key, kind, control, field(label, control)];
  });
  section.append(
    h("h3", { id: "settings-title" }, "Settings"),
    h("dl", { class: "settings", id: "flow-settings" }, shown.flatMap(([key, value]) => [h("dt", {}, key), h("dd", {}, typeof value === "object" ? JSON.stringify(value) : String(value))])),
    h("form", { id: "settings-form", "aria-label": "Edit the flow's settings", onsubmit: async (event) => {
      event.preventDefault();
      const changes = {};
      for (const [key, kind, control] of inputs) {
        const value = kind === "number" ? Number(control.value) : control.value;
        if (value !== (phone[key] ?? "")) changes[key] = value;
      }
      if (!Object.keys(changes).length) return say("Nothing changed.");
      const saved = await attempt(() => api("PUT", `/v2/project-flows/${flow._id}`, { phone: changes }));
      if (saved) {
        say("Settings saved.");
        updated(saved.data);
      }
    } }, h("div", { class: "row" }, inputs.map((i) => i[3])), h("button", { type: "submit", class: "primary" }, "Save settings")),
  );
}

function renderTemplates(section, flow, appName, current) {
  const phone = flow.phone || {};
  const saved = () => phone.templates || {};
  const channel = h("select", { id: "template-channel" }, ["sms", "voice"].map((c) => h("option", { value: c }, c)));
  const locales = new Set(["en", ...Object.keys(saved().sms || {}), ...Object.keys(saved().voice || {})]);
  const locale = h("input", { id: "template-locale", value: [...locales][1] || "en", list: "template-locales", size: 8, spellcheck: "false" });
  const text = h("textarea", { id: "template-text", rows: 4 });
  const draft = h("div", { id: "draft-preview", "aria-live": "polite" });
  const serverText = h("div", { class: "preview", id: "preview-text" });
  const serverMeta = h("p", { id: "preview-segments" });

  const load = () => {
    text.value = saved()[channel.value]?.[locale.value.trim()] ?? "";
    live();
    refresh();
  };
  const live = () => {
    if (!text.value) {
      draft.replaceChildren(h("p", { class: "muted" }, "No template for this locale: the built-in text is sent."));
      return;
    }
    const minutes = Math.max(1, Math.round((phone.otpExpiresInSeconds || 600) / 60));
    const rendered = text.value.replaceAll("{code}", SAMPLE.slice(0, phone.otpLength || 6)).replaceAll("{app}", appName).replaceAll("{minutes}", String(minutes));
    const parts = [h("h4", {}, "Draft (as typed)"), h("div", { class: "preview" }, rendered)];
    if (channel.value === "sms") {
      const m = segments(rendered);
      parts.push(h("p", { id: "draft-segments" }, `${m.count} segment${m.count === 1 ? "" : "s"}, ${m.encoding}, ${m.units} units, before autofill lines.`));
    }
    draft.replaceChildren(...parts);
  };
  let asked = 0;
  const refresh = async () => {
    const ticket = ++asked;
    const answer = await attempt(() => post(`/v2/project-flows/${flow._id}/preview`, { language: locale.value.trim() || undefined, channel: channel.value }));
    if (!answer || !current() || ticket !== asked) return;
    const p = answer.data;
    serverText.textContent = p.text;
    serverMeta.textContent = p.segments != null
      ? `${p.segments} segment${p.segments === 1 ? "" : "s"}, ${p.encoding}, locale ${p.language}.`
      : `A voice call, locale ${p.language}.`;
  };
  const save = async (event) => {
    event.preventDefault();
    const all = structuredClone(saved());
    const key = locale.value.trim();
    all[channel.value] = all[channel.value] || {};
    if (text.value) all[channel.value][key] = text.value;
    else delete all[channel.value][key];
    const answer = await attempt(() => api("PUT", `/v2/project-flows/${flow._id}`, { phone: { templates: all } }));
    if (!answer) return;
    phone.templates = answer.data.phone?.templates || all;
    say(text.value ? `The ${channel.value} template for ${key} is saved.` : `The ${channel.value} template for ${key} is removed.`);
    await refresh();
  };
  let timer;
  text.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(live, 150); });
  channel.addEventListener("change", load);
  locale.addEventListener("change", load);

  section.append(
    h("h3", { id: "templates-title" }, "Templates"),
    h("p", { class: "muted" }, "Placeholders: {code}, {app} (the project's name), {minutes}. An SMS may take at most 2 segments."),
    h("datalist", { id: "template-locales" }, [...locales].map((l) => h("option", { value: l }))),
    h("form", { id: "template-form", "aria-label": "Edit a template", onsubmit: save },
      h("div", { class: "row" }, field("Channel", channel), field("Locale", locale, "A built-in locale, e.g. en, es, pt-BR")),
      field("Template text", text),
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Save template"),
        h("button", { type: "button", onclick: refresh }, "Preview saved text"))),
    draft,
    h("h4", {}, "As the API renders it (saved)"),
    serverText, serverMeta,
  );
  load();
}
