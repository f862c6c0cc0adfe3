// Small pieces every page uses: state badges, empty and error states, buttons that call the API.

import { h, announce } from "./dom.js";

const STATE_WORDS = {
  queued: "queued", running: "running", succeeded: "succeeded", failed: "failed, will retry",
  dead: "dead", canceled: "canceled", skipped: "skipped", ok: "ok", timed_out: "timed out",
  active: "active", paused: "paused",
};

/** A state as text with a colour and a shape, never colour alone. */
export function badge(state) {
  return h("span", { class: `badge badge-${state}`, dataset: { state } }, STATE_WORDS[state] || state);
}

export function empty(title, ...hint) {
  return h("div", { class: "empty", role: "status" }, h("p", { class: "empty-title" }, title),
    hint.length ? h("p", {}, ...hint) : null);
}

/** An error as a person reads it: what happened, and the API's own sentence and code. */
export function failure(error, what = "This page could not be loaded") {
  const lines = [h("p", { class: "error-title" }, what)];
  if (error && error.message) lines.push(h("p", {}, error.message));
  if (error && error.code && error.kind !== "unreachable") {
    lines.push(h("p", { class: "muted" }, `${error.status} ${error.code}`));
  }
  return h("div", { class: "error", role: "alert" }, lines);
}

export function loading(what = "Loading…") {
  return h("p", { class: "loading", role: "status" }, what);
}

export function code(text) {
  return h("code", {}, text);
}

/**
 * A button that runs an API action: disabled while it runs, the outcome announced. `action` returns
 * a promise; its rejection is shown next to the button.
 */
export function actionButton(label, action, { disabledReason, kind = "", key } = {}) {
  const note = h("span", { class: "action-note", role: "status" });
  const button = h("button", {
    type: "button", class: `btn ${kind}`, disabled: Boolean(disabledReason),
    title: disabledReason || undefined, dataset: key ? { focusKey: key } : undefined,
  }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    note.textContent = "";
    try {
      const message = await action();
      if (message) announce(message);
    } catch (e) {
      note.textContent = e.message || String(e);
      note.classList.add("action-error");
      announce(`${label} failed: ${e.message}`);
    } finally {
      if (button.isConnected) button.disabled = Boolean(disabledReason);
    }
  });
  return h("span", { class: "action" }, button, note);
}

/** Scopes decide which buttons work; the API still checks every call. */
export function can(me, scope) {
  return Boolean(me) && (me.admin || me.scopes.includes(scope));
}

export function needs(me, scope) {
  return can(me, scope) ? undefined : `Your token does not hold the ${scope} scope`;
}

/** A definition list from [label, value] pairs (values may be nodes). */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([term, value]) => [
    h("dt", {}, term), h("dd", {}, value ?? "—"),
  ]));
}

/**
 * Errors the shell handles for every page: a navigation away (AbortError), a token that stopped
 * working (back to sign-in), an API that does not answer (a banner, and the page is loaded again
 * when it answers). A page rethrows these and shows any other error itself.
 */
export function passOn(e) {
  if (e.name === "AbortError" || e.kind === "unauthorized" || e.kind === "unreachable") throw e;
}
