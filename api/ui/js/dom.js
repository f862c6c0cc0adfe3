// Building DOM without HTML strings: every value reaches the page as text or an attribute, never as
// markup, so nothing a task or a step output contains can run as script (the API token lives in this
// page's session storage).

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style") {
      el.style.cssText = value; // through the CSSOM: the page's CSP refuses inline style attributes
    } else if (key === "text") {
      el.textContent = String(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("a", {href: "#/tasks"}, "Tasks") -> <a href="#/tasks">Tasks</a>; strings become text nodes. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/**
 * Replace a container's content, keeping keyboard focus on the element with the same
 * data-focus-key (live updates must not throw a keyboard user back to the top of the page).
 */
export function swap(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : undefined;
  // Folded sections the reader opened (or closed) stay as they were.
  const folds = new Map([...container.querySelectorAll("details[data-fold]")].map((d) => [d.dataset.fold, d.open]));
  container.replaceChildren();
  append(container, children);
  for (const d of container.querySelectorAll("details[data-fold]")) {
    if (folds.has(d.dataset.fold)) d.open = folds.get(d.dataset.fold);
  }
  if (key) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

/** Announce a short message to screen readers (and show it briefly). */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (region) {
    region.textContent = "";
    // A fresh text node after a tick, so the same message twice is still announced.
    setTimeout(() => { region.textContent = message; }, 30);
  }
}
