// The event feed: recent events from GET /api/events, then new ones as they happen from
// the SSE stream, newest first, with filters by role and kind. A reconnecting stream may
// repeat events; they are kept once, by sequence number.

import { getJson } from "./api.js";
import { formatClock, h, syncChildren } from "./dom.js";
import { openStream } from "./stream.js";

const KEEP = 400;

const events = []; // oldest first
let lastSeq = 0;
let list = null;
let roleFilter = null;
let kindFilter = null;
const knownRoles = new Set();
const knownKinds = new Set();

export async function startEvents({ listEl, roleSelect, kindSelect, onStream }) {
  list = listEl;
  roleFilter = roleSelect;
  kindFilter = kindSelect;
  roleFilter.addEventListener("change", render);
  kindFilter.addEventListener("change", render);
  try {
    addAll(await getJson("/api/events?limit=200"));
  } catch (error) {
    list.replaceChildren(h("li", { class: "empty", text: `Could not read events: ${error.message}` }));
  }
  openStream(() => `/api/events/stream?after=${lastSeq}`,
    { farm: (message) => addAll([JSON.parse(message.data)]) }, onStream);
}

export function noteRoles(names) {
  let changed = false;
  for (const name of names) {
    if (!knownRoles.has(name)) {
      knownRoles.add(name);
      changed = true;
    }
  }
  if (changed) fillSelect(roleFilter, knownRoles, "all roles");
}

function addAll(batch) {
  let added = false;
  for (const event of batch) {
    if (event.seq !== null && event.seq <= lastSeq) continue;
    lastSeq = Math.max(lastSeq, event.seq || 0);
    events.push(event);
    added = true;
  }
  if (!added) return;
  events.splice(0, Math.max(0, events.length - KEEP));
  const roles = events.map((event) => event.role).filter(Boolean);
  noteRoles(roles);
  const kinds = new Set(events.map((event) => event.kind));
  if ([...kinds].some((kind) => !knownKinds.has(kind))) {
    kinds.forEach((kind) => knownKinds.add(kind));
    fillSelect(kindFilter, knownKinds, "all kinds");
  }
  render();
}

function fillSelect(select, values, allLabel) {
  if (!select) return;
  const chosen = select.value;
  select.replaceChildren(h("option", { value: "", text: allLabel }),
    ...[...values].sort().map((value) => h("option", { value, text: value })));
  select.value = [...values].includes(chosen) ? chosen : "";
}

function tone(kind) {
  if (/fail|unhealthy|error|killed|down|refused|unplaceable/.test(kind)) return "bad";
  if (/ready|started|up$|readmit/.test(kind)) return "good";
  if (/drain|stopping|backoff|moved/.test(kind)) return "warn";
  return "plain";
}

function render() {
  if (!list) return;
  const role = roleFilter.value;
  const kind = kindFilter.value;
  const shown = events.filter((event) => (!role || event.role === role) && (!kind || event.kind === kind)).reverse();
  if (!shown.length) {
    list.replaceChildren(h("li", { class: "empty", text: events.length ? "No event matches these filters." : "No events yet." }));
    return;
  }
  const bySeq = new Map(shown.map((event) => [String(event.seq), event]));
  syncChildren(list, [...bySeq.keys()], (key) => makeItem(bySeq.get(key)), () => {});
}

function makeItem(event) {
  const where = event.node || event.role || "";
  return h("li", { class: "event", dataset: { tone: tone(event.kind), kind: event.kind, role: event.role || "" } },
    h("div", { class: "event-head" },
      h("time", { datetime: new Date(event.ts * 1000).toISOString(), text: formatClock(event.ts) }),
      h("span", { class: "kind", text: event.kind }),
      where ? h("span", { class: "where", text: where }) : null),
    h("p", { class: "message", text: event.message }));
}
