// Fraud guard: the active blocks (lift one) and the safe list (add, remove).

import { api, get, post } from "./api.js";
import { attempt, field, h, say, table, time } from "./dom.js";

export async function render(root, _args, current) {
  root.append(h("h2", { tabindex: "-1" }, "Fraud guard"));
  const blocks = h("section", { id: "blocks", "aria-labelledby": "blocks-title" });
  const safe = h("section", { id: "safe-list", "aria-labelledby": "safe-title" });
  root.append(blocks, safe);

  const showBlocks = async () => {
    const answer = await get("/v2/fraud-guard/blocks");
    if (!current()) return;
    blocks.replaceChildren(
      h("h3", { id: "blocks-title" }, "Active blocks"),
      table(`${answer.data.length} active block(s)`, ["Prefix", "Reason", "Blocked at", "Until", { label: "Sent", num: true }, { label: "Validated", num: true }, "Action"],
        answer.data.map((b) => [
          b.prefix, b.reason === "low_conversion_country" ? "low conversion (whole calling code)" : "low conversion (prefix)",
          time(b.blockedAt), time(b.until), b.sent, b.validated,
          h("button", { type: "button", class: "danger", "aria-label": `Lift the block on ${b.prefix}`, onclick: async () => {
            const lifted = await attempt(() => api("DELETE", `/v2/fraud-guard/blocks/${encodeURIComponent(b.prefix)}`));
            if (lifted) say(`The block on ${b.prefix} is lifted.`);
            await attempt(showBlocks);
          } }, "Lift"),
        ]), { id: "blocks-table" }),
    );
  };

  const countryCode = h("input", { id: "safe-country", name: "countryCode", required: true, size: 6, placeholder: "+507", inputmode: "tel" });
  const phone = h("input", { id: "safe-phone", name: "phone", required: true, size: 16, inputmode: "tel" });
  const list = h("div", { id: "safe-entries" });
  const showSafe = async () => {
    const answer = await get("/v2/safe-list");
    if (!current()) return;
    list.replaceChildren(table(`${answer.data.length} safe-listed number(s)`, ["Number", "Added", "Action"],
      answer.data.map((e) => [
        `${e.countryCode} ${e.phone}`, time(e.createdAt),
        h("button", { type: "button", class: "danger", "aria-label": `Remove ${e.countryCode} ${e.phone} from the safe list`, onclick: async () => {
          const removed = await attempt(() => api("DELETE", `/v2/safe-list/${encodeURIComponent(e._id)}`));
          if (removed) say(`${e.countryCode} ${e.phone} is off the safe list.`);
          await attempt(showSafe);
        } }, "Remove"),
      ]), { id: "safe-table" }));
  };
  safe.append(
    h("h3", { id: "safe-title" }, "Safe list"),
    h("p", { class: "muted" }, "Safe-listed numbers are never blocked by the guard."),
    h("form", { class: "row", id: "safe-form", "aria-label": "Add a number to the safe list", onsubmit: async (event) => {
      event.preventDefault();
      const added = await attempt(() => post("/v2/safe-list", { countryCode: countryCode.value.trim(), phone: phone.value.trim() }));
      if (added) {
        say(`${added.data.countryCode} ${added.data.phone} is on the safe list.`);
        phone.value = "";
        await attempt(showSafe);
      }
    } }, field("Country code", countryCode), field("Phone", phone), h("button", { type: "submit", class: "primary" }, "Add to safe list")),
    list,
  );
  await Promise.all([showBlocks(), showSafe()]);
}
