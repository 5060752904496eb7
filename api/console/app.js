// The console's shell: sign-in, the navigation and hash routing
// (#/overview, #/validations/<id>, ...), one page module per page.

import { api, session, whenUnauthorized } from "./api.js";
import { fail, quiet, say } from "./dom.js";
import * as overview from "./overview.js";
import * as validations from "./validations.js";
import * as fraud from "./fraud.js";
import * as webhooks from "./webhooks.js";
import * as flows from "./flows.js";

const PAGES = { overview, validations, fraud, webhooks, flows };
const TITLES = { overview: "Overview", validations: "Validations", fraud: "Fraud guard", webhooks: "Webhooks", flows: "Flows" };

const $ = (id) => document.getElementById(id);

function signedIn(yes) {
  $("sign-in").hidden = yes;
  $("nav").hidden = !yes;
  $("sign-out").hidden = !yes;
  if (!yes) $("page").replaceChildren();
}

let rendering = 0;
async function route() {
  const hash = location.hash;
  if (hash && !hash.startsWith("#/")) return; // the skip link, and other in-page anchors
  if (!session.token()) {
    signedIn(false);
    document.title = "Sign in · OTP console";
    $("token").focus();
    return;
  }
  signedIn(true);
  const [name, ...rest] = hash.slice(2).split("/");
  const page = PAGES[name] ? name : "overview";
  if (!PAGES[name]) {
    history.replaceState(null, "", "#/overview");
  }
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[page]} · OTP console`;
  const ticket = ++rendering;
  const container = document.createElement("div");
  container.id = `page-${page}`;
  $("page").replaceChildren(container);
  try {
    await PAGES[page].render(container, rest.map(decodeURIComponent), () => ticket === rendering);
  } catch (error) {
    if (ticket === rendering) fail(error);
  }
}

async function signIn(event) {
  event.preventDefault();
  const input = $("token");
  const token = input.value.trim();
  if (!token) {
    fail(new Error("Enter a client token."));
    input.focus();
    return;
  }
  const button = $("sign-in-button");
  button.disabled = true;
  try {
    // Checks the token before keeping it: any authenticated read will do.
    await api("GET", "/v2/projects?limit=1", undefined, token);
    session.set(token);
    input.value = "";
    quiet();
    if (!location.hash.startsWith("#/") || location.hash === "#/") history.replaceState(null, "", "#/overview");
    say("Signed in.");
    $("main").focus();
    await route();
  } catch (error) {
    fail(error);
    input.focus();
    input.select();
  } finally {
    button.disabled = false;
  }
}

function signOut() {
  session.clear();
  quiet();
  say("Signed out.");
  history.replaceState(null, "", "#/");
  route();
}

whenUnauthorized(() => {
  // A token refused mid-session (revoked, expired): forget it, ask again.
  session.clear();
  signedIn(false);
});

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", () => {
  quiet();
  route();
});
route();
