// Sign in with an API token: checked with GET /agents/me before it is kept (in this tab only).

import { api, session } from "../api.js";
import { h } from "../dom.js";
import { code } from "../ui.js";

export default async function login(view) {
  view.title("Sign in");
  const reason = sessionStorage.getItem("ordo.signin_reason");
  sessionStorage.removeItem("ordo.signin_reason");
  const next = view.query.get("next") || "/";
  const message = h("div", { id: "login-message", role: "alert" });
  if (reason) message.append(h("p", { class: "error" }, `Signed out: ${reason}`));
  const input = h("input", {
    id: "token", name: "token", type: "password", autocomplete: "off", spellcheck: "false",
    required: true, "aria-describedby": "token-help login-message", placeholder: "ordo_…",
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
  const form = h("form", { class: "login", novalidate: true },
    h("h1", {}, "Sign in to Ordo"),
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { id: "token-help", class: "muted" },
      "The admin token printed by the first ", code("ordo up"), ", or an agent's own from ",
      code("ordo token create --agent NAME --scopes tasks:read,tasks:write,runs:read"),
      ". It is kept in this browser tab only and sent to the API as a bearer header."),
    submit,
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    message.replaceChildren();
    if (!token) {
      message.append(h("p", { class: "error" }, "Paste a token first."));
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const me = await api("/agents/me", { token });
      session.set(token);
      view.signedIn(me);
      view.navigate(`#${next.startsWith("/") ? next : "/"}`);
    } catch (e) {
      const text = e.kind === "unauthorized"
        ? `That token was refused: ${e.message}`
        : e.kind === "unreachable" ? `${e.message} Is ordo running?` : e.message;
      message.append(h("p", { class: "error" }, text));
      input.focus();
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
  view.main.replaceChildren(form);
  view.ready();
  input.focus();
}
