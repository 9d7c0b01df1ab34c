// Tiny DOM helpers: build elements, and keep keyed children in order without rebuilding
// them (rebuilding would drop keyboard focus every time the farm changes).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Make `parent`'s children exactly `keys` in that order. `make(key)` builds a missing
// child, `update(el, key)` refreshes one (new or kept). Elements are found by
// data-key, moved only when out of place, and removed when their key is gone. Moving an
// element drops the keyboard focus inside it: it is given back (a host whose trouble moves
// it up the folded map keeps the focus of the person reading it).
export function syncChildren(parent, keys, make, update) {
  const focused = parent.contains(document.activeElement) ? document.activeElement : null;
  const wanted = new Set(keys);
  const existing = new Map();
  for (const child of [...parent.children]) {
    if (child.dataset.key !== undefined && wanted.has(child.dataset.key)) existing.set(child.dataset.key, child);
    else child.remove();
  }
  keys.forEach((key, index) => {
    let el = existing.get(key);
    if (!el) {
      el = make(key);
      el.dataset.key = key;
    }
    if (parent.children[index] !== el) parent.insertBefore(el, parent.children[index] ?? null);
    update(el, key);
  });
  if (focused && focused !== document.activeElement && focused.isConnected) focused.focus({ preventScroll: true });
}

export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function formatRate(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2).replace(/\.?0+$/, "") || "0";
}

export function formatClock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
}
