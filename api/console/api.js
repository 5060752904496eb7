// The public /v2 API, called with the session's client token. The token
// lives in sessionStorage (this tab only) and travels in the Authorization
// header, never in a URL.

const KEY = "otpConsoleToken";

export const session = {
  token: () => sessionStorage.getItem(KEY),
  set: (token) => sessionStorage.setItem(KEY, token),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, token, words) {
    super(words);
    this.status = status;
    this.token = token;
  }
}

const WORDS = {
  invalid_token: "The client token was refused: it is malformed, expired or revoked, or its client no longer exists. Sign in again with a valid token.",
  route_not_found: "This API does not offer that feature (no such route in this build).",
  method_not_allowed: "This API does not allow that action here.",
  invalid_json: "The request was not valid JSON.",
  payload_too_large: "The request is too large.",
  service_unavailable: "The service is overloaded right now; try again shortly.",
  internal_error: "The API failed unexpectedly (an internal error).",
  too_many_requests: "Too many requests.",
  fraud_guard_block_not_found: "That block no longer exists: it was lifted or it expired.",
  safe_list_entry_not_found: "That number is no longer on the safe list.",
  phone_validation_not_found: "No validation with that id was found.",
  projectFlow_not_found: "No flow with that id was found.",
  project_not_found: "No project with that id was found.",
  invalid_templates: "The template was refused: it needs {code}, may use only {code}, {app} and {minutes}, must be for a known locale, and an SMS may take at most 2 segments once rendered.",
  invalid_language: "That language is not one of the built-in locales.",
  invalid_url: "That URL cannot receive webhooks (it must be a public http(s) address).",
  invalid_eventTypes: "One of the event types is unknown.",
  webhookEndpoint_disabled: "That endpoint is disabled: enable it first.",
  webhookEndpoint_not_found: "No webhook endpoint with that id was found.",
  webhookMessage_not_found: "No webhook message with that event id was found (messages are kept for 30 days).",
};

const NAMES = {
  countryCode: "country code", phone: "phone number", otpLength: "code length", prefix: "prefix",
  from: "start date", to: "end date", page: "page", limit: "page size", status: "status",
  url: "URL", since: "start time", until: "end time",
};

/** An error envelope ({code, message: "N:token"}) in words. */
export function describe(status, body, retryAfter) {
  const message = body && typeof body.message === "string" ? body.message : "";
  const token = message.includes(":") ? message.slice(message.indexOf(":") + 1) : message;
  let words = WORDS[token];
  if (!words && body && body.code === "MissingParameter") {
    words = `Required: ${token.split(",").map((s) => s.trim().replace(/^missing /, "")).map((n) => NAMES[n] || n).join(", ")}.`;
  }
  if (!words && token.startsWith("invalid_")) {
    const name = token.slice("invalid_".length);
    words = `The ${NAMES[name] || name} is not valid.`;
  }
  if (!words && token.endsWith("_not_found")) {
    words = `No ${token.slice(0, -"_not_found".length).replace(/_/g, " ")} with that id was found.`;
  }
  if (!words && token) words = `The API refused: ${token.replace(/_/g, " ")}.`;
  if (!words) words = `The API answered ${status} without an explanation.`;
  if (retryAfter) words += ` Try again in ${retryAfter} seconds.`;
  return token ? `${words} (${status} ${token})` : words;
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

/** Calls the API; resolves to the envelope, rejects with an ApiError in words. */
export async function api(method, path, body, token = session.token()) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch (error) {
    throw new ApiError(0, "network", `The API could not be reached (${error.message}). Check the connection and try again.`);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, json?.message, describe(response.status, json, response.headers.get("retry-after")));
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return json;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});

/** A query string of the non-empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
