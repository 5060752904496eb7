// Building the page with DOM calls only: no innerHTML from data, no inline
// handlers or styles (the Content-Security-Policy allows neither).

/** h("button", {type: "button", onclick: fn, class: "x"}, "text", child...) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "text") {
      node.textContent = value;
    } else if (key === "value") {
      node.value = value;
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.setAttribute("class", value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

let fieldIds = 0;
/** A labelled input: the label's `for` names the control. */
export function field(label, control, hint) {
  if (!control.id) control.id = `field-${++fieldIds}`;
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = `${control.id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, class: "muted" }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** A table with a caption, header cells and rows of cells (nodes or text). */
export function table(caption, headers, rows, attrs = {}) {
  return h("table", attrs,
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", class: x.num ? "num" : undefined }, x.label ?? x)))),
    h("tbody", {}, rows.length
      ? rows.map((row) => h("tr", {}, row.map((cell, i) => h("td", { class: headers[i]?.num ? "num" : undefined }, cell))))
      : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "Nothing to show."))));
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function time(iso) {
  return h("time", { datetime: iso }, when(iso));
}

export function percent(ratio) {
  return `${(100 * (ratio || 0)).toFixed(1)} %`;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

/** Tells the user, politely, that something worked. */
export function say(text) {
  document.getElementById("alert").textContent = "";
  document.getElementById("status").textContent = text;
}

/** Shows an error (an ApiError's words) in the alert region. */
export function fail(error) {
  document.getElementById("status").textContent = "";
  document.getElementById("alert").textContent = error?.message || String(error);
}

export function quiet() {
  document.getElementById("status").textContent = "";
  document.getElementById("alert").textContent = "";
}

/** Runs an action, showing its error in words; resolves to its value or undefined. */
export async function attempt(action) {
  try {
    return await action();
  } catch (error) {
    fail(error);
    return undefined;
  }
}
