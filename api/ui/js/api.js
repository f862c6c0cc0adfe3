// The console's only way to the server: Ordo's public JSON API, with the user's bearer token from
// this tab's session storage (never in a URL, never in local storage, gone when the tab closes).

const TOKEN_KEY = "ordo.token";

export class ApiError extends Error {
  /**
   * kind: "unauthorized" (401: no, expired or revoked token), "forbidden" (403: a scope is missing),
   * "not_found", "rate_limited" (429), "unreachable" (no answer, or 502/503/504), "invalid" (other
   * 4xx), "server" (500).
   */
  constructor(kind, status, code, message, details = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export const session = {
  token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

const listeners = new Set();

/** fn(error) is called for every failed request (the shell shows banners and handles 401). */
export function onApiError(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const okListeners = new Set();

/** fn() is called after every answered request (the shell clears its "API down" banner). */
export function onApiOk(fn) {
  okListeners.add(fn);
  return () => okListeners.delete(fn);
}

function kindOf(status) {
  if (status === 401) return "unauthorized";
  if (status === 403) return "forbidden";
  if (status === 404) return "not_found";
  if (status === 429) return "rate_limited";
  if (status === 502 || status === 503 || status === 504) return "unreachable";
  if (status >= 500) return "server";
  return "invalid";
}

/**
 * Call the API: api("/tasks", {query: {limit: 50}}), api(`/tasks/${id}/pause`, {method: "POST"}).
 * Resolves to the parsed JSON body (null for 204); rejects with ApiError.
 */
export async function api(path, { method = "GET", query, body, token, signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, v);
  }
  const headers = { Accept: "application/json" };
  const bearer = token ?? session.token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    const error = new ApiError(
      "unreachable", 0, "UNREACHABLE", `The Ordo API at ${window.location.origin} does not answer.`,
    );
    listeners.forEach((fn) => fn(error));
    throw error;
  }
  if (response.ok) {
    okListeners.forEach((fn) => fn());
    if (response.status === 204) return null;
    return response.json();
  }
  let payload = {};
  try {
    payload = await response.json();
  } catch {
    // a proxy's HTML error page, or an empty body
  }
  const error = new ApiError(
    kindOf(response.status),
    response.status,
    payload.code || `HTTP_${response.status}`,
    payload.message || `The API answered ${response.status} ${response.statusText}.`,
    payload.details,
  );
  if (error.kind === "rate_limited") {
    error.retryAfter = Number(response.headers.get("Retry-After")) || 5;
  }
  if (error.kind !== "unreachable") okListeners.forEach((fn) => fn());
  listeners.forEach((fn) => fn(error));
  throw error;
}

/** Every page of a cursor-paged list, up to `max` items. */
export async function allPages(path, query, max) {
  const items = [];
  let cursor;
  do {
    const page = await api(path, { query: { ...query, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return { items: items.slice(0, max), more: Boolean(cursor) || items.length > max };
}
