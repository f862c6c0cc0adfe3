// The console's shell: session, routing (#/… in the URL hash; the token never appears in it),
// live updates, and the banners for an unreachable API or an expired token.

import { api, ApiError, session, onApiError, onApiOk } from "./api.js";
import { h, announce } from "./dom.js";
import { failure, loading } from "./ui.js";
import availability from "./pages/availability.js";
import login from "./pages/login.js";
import overview from "./pages/overview.js";
import plan from "./pages/plan.js";
import plans from "./pages/plans.js";
import run from "./pages/run.js";
import runs from "./pages/runs.js";
import task from "./pages/task.js";
import tasks from "./pages/tasks.js";

const ROUTES = [
  [/^\/$/, overview, "overview"],
  [/^\/tasks$/, tasks, "tasks"],
  [/^\/tasks\/([0-9a-fA-F-]{36})$/, task, "tasks"],
  [/^\/runs$/, runs, "runs"],
  [/^\/runs\/(\d{1,19})$/, run, "runs"],
  [/^\/runs\/(\d{1,19})\/plan\/([^/]+)$/, plan, "plans"],
  [/^\/plans$/, plans, "plans"],
  [/^\/availability$/, availability, "availability"],
];

const main = document.getElementById("main");
const banner = document.getElementById("banner");
let me = null; // GET /agents/me for the token in this tab
let current = null; // {controller, timers}
let firstRender = true;

/** The route after "#", query included: what sign-in returns to. */
function currentRoute() {
  return window.location.hash.replace(/^#/, "") || "/";
}

function parseHash() {
  // Split before decoding: a query value may itself hold an encoded route (login's ?next=).
  const raw = currentRoute();
  const at = raw.indexOf("?");
  const path = decodeURIComponent(at < 0 ? raw : raw.slice(0, at)) || "/";
  return { path, query: new URLSearchParams(at < 0 ? "" : raw.slice(at + 1)) };
}

export function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

/** A loop that refreshes a page while it is shown: pauses in hidden tabs, backs off on errors. */
function liveLoop(signal, fn, intervalMs) {
  let timer = null;
  let failures = 0;
  const tick = async () => {
    timer = null;
    if (signal.aborted) return;
    if (document.hidden) {
      document.addEventListener("visibilitychange", tick, { once: true });
      return;
    }
    let next = intervalMs;
    try {
      const wanted = await fn();
      if (wanted === null) return; // the page says there is nothing more to watch
      if (typeof wanted === "number") next = wanted;
      failures = 0;
    } catch (e) {
      if (e.name === "AbortError" || signal.aborted) return;
      failures += 1;
      next = e.retryAfter ? e.retryAfter * 1000 : Math.min(30000, intervalMs * 2 ** failures);
    }
    if (!signal.aborted) timer = setTimeout(tick, next);
  };
  timer = setTimeout(tick, intervalMs);
  signal.addEventListener("abort", () => {
    if (timer) clearTimeout(timer);
    document.removeEventListener("visibilitychange", tick);
  });
}

function setNav(section) {
  for (const link of document.querySelectorAll("nav.main-nav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function renderWho() {
  const who = document.getElementById("who");
  if (!me) {
    who.replaceChildren();
    return;
  }
  who.replaceChildren(
    h("span", { class: "agent", title: `scopes: ${me.scopes.join(", ")}` }, me.agent.name,
      me.admin ? h("span", { class: "tag" }, "admin") : null),
    h("button", { type: "button", class: "btn btn-quiet", onclick: signOut }, "Sign out"),
  );
}

function signOut() {
  session.clear();
  me = null;
  renderWho();
  announce("Signed out");
  navigate("#/login");
}

function showBanner(text, kind) {
  banner.replaceChildren(h("p", {}, text));
  banner.className = `banner banner-${kind}`;
  banner.hidden = false;
}

onApiError((error) => {
  if (error.kind === "unreachable") {
    showBanner(`${error.message} Retrying…`, "down");
  } else if (error.kind === "unauthorized" && session.token()) {
    // An expired or revoked token: forget it and ask for a new one, saying why.
    session.clear();
    me = null;
    renderWho();
    const back = parseHash().path === "/login" ? "/" : currentRoute();
    sessionStorage.setItem("ordo.signin_reason", error.message);
    navigate(`#/login?next=${encodeURIComponent(back)}`);
  }
});
onApiOk(() => {
  if (!banner.hidden && banner.classList.contains("banner-down")) {
    banner.hidden = true;
    announce("The API answers again");
  }
});

async function route() {
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = { controller };
  const { path, query } = parseHash();
  performance.mark("ordo:route", { detail: path });
  main.dataset.state = "loading";
  main.setAttribute("aria-busy", "true");

  if (path === "/login") {
    setNav("login");
    document.body.classList.add("signed-out");
    await login(pageView(controller, [], query, "login"));
    return;
  }
  if (!session.token()) {
    navigate(`#/login?next=${encodeURIComponent(currentRoute())}`);
    return;
  }
  document.body.classList.remove("signed-out");
  const match = ROUTES.map(([re, page, section]) => [re.exec(path), page, section]).find(([m]) => m);
  if (!match) {
    setNav("");
    main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "There is no console page at this address. "),
      h("p", {}, h("a", { href: "#/" }, "Go to the overview")));
    main.dataset.state = "error";
    main.removeAttribute("aria-busy");
    return;
  }
  const [m, page, section] = match;
  setNav(section);
  try {
    if (!me) {
      main.replaceChildren(loading());
      me = await api("/agents/me", { signal: controller.signal });
      renderWho();
    }
    await page(pageView(controller, m.slice(1), query, section));
  } catch (e) {
    if (e.name === "AbortError" || controller.signal.aborted) return;
    if (e instanceof ApiError && e.kind === "unauthorized") return; // the handler above signs out
    main.replaceChildren(failure(e));
    main.dataset.state = "error";
    main.removeAttribute("aria-busy");
    if (e instanceof ApiError && e.kind === "unreachable") {
      liveLoop(controller.signal, async () => {
        await api("/health", { signal: controller.signal });
        route();
        return null;
      }, 3000);
    }
  }
}

function pageView(controller, params, query, section) {
  return {
    main,
    params,
    query,
    section,
    me,
    signal: controller.signal,
    /** Refresh with fn every intervalMs while the page is shown; fn returns null to stop. */
    live(fn, intervalMs) {
      liveLoop(controller.signal, fn, intervalMs);
    },
    title(text) {
      document.title = `${text} · Ordo`;
    },
    /** The page's main content is on screen (tests and the benchmark wait for this). */
    ready(state = "ready") {
      if (controller.signal.aborted) return;
      main.dataset.state = state;
      main.removeAttribute("aria-busy");
      // User Timing: how long the page took to be usable (benchmarks/console.py reads these).
      performance.mark("ordo:ready", { detail: section });
      if (!firstRender) {
        const heading = main.querySelector("h1");
        if (heading) {
          heading.setAttribute("tabindex", "-1");
          heading.focus({ preventScroll: true });
        }
      }
      firstRender = false;
    },
    signedIn(agent) {
      me = agent;
      renderWho();
    },
    navigate,
  };
}

document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", route);
route();
