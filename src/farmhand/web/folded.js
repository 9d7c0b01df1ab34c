// The folded farm map, for a farm too large for a tile per node (the status stream then lists
// only the nodes that need attention, `nodes_complete` false). Each host is a compact region
// with its nodes counted by state, in words and icons; hosts in trouble come first (down,
// then failing nodes, then nodes on their way up or out, then drained, then all healthy).
// The nodes that need attention keep their own tiles under their host. A host opens (click,
// Enter or Space on its name) to show every tile, fetched by hostview.js; Close or Escape
// folds it again.

import { h, setText, syncChildren } from "./dom.js";
import { closeHost, hostView, isOpen, nodesOfHost, toggleHost } from "./hostview.js";
import { byRoleThenIndex, makeTile, renderRoleGroups, updateTile, VISUALS, visualState } from "./map.js";
import { maxRate } from "./load.js";

const ORDER = ["failing", "starting", "pending", "draining", "stopping", "healthy"];
const VISUAL_OF_STATE = { running: "healthy", starting: "starting", pending: "pending", draining: "draining", stopping: "stopping" };
const ATTENTION_SHOWN = 12; // tiles under a folded host; the rest are a count and a way in
const names = new Intl.Collator(undefined, { numeric: true });

let filterText = "";

export function setHostFilter(text) {
  filterText = text.trim().toLowerCase();
}

// Nodes per visual state on `host`: the listed nodes by their own look, the others (running
// healthy, left out of a folded status) from the host's counts by state.
export function hostCounts(host, listed) {
  const counts = Object.fromEntries(ORDER.map((visual) => [visual, 0]));
  const listedByState = {};
  for (const node of listed) {
    counts[visualState(node)] += 1;
    listedByState[node.state] = (listedByState[node.state] || 0) + 1;
  }
  for (const [state, count] of Object.entries(host.states || {})) {
    const rest = count - (listedByState[state] || 0);
    if (rest > 0) counts[VISUAL_OF_STATE[state] || "pending"] += rest;
  }
  return counts;
}

// 0 = look first: a host that is not up, then failing nodes, then nodes starting, pending,
// draining or stopping, then a drained host, then all healthy.
function troubleRank(host, counts) {
  if (host.state !== "up" && host.state !== "drained") return 0;
  if (counts.failing) return 1;
  if (ORDER.some((visual) => visual !== "healthy" && visual !== "failing" && counts[visual])) return 2;
  if (host.state === "drained") return 3;
  return 4;
}

function worstVisual(counts) {
  return ORDER.find((visual) => counts[visual]) || "empty";
}

function describe(counts) {
  const parts = ORDER.filter((visual) => counts[visual]).map((visual) => `${counts[visual]} ${VISUALS[visual].label}`);
  return parts.length ? parts.join(", ") : "no nodes";
}

function hostWord(state) {
  return state === "up" ? "● up" : state === "drained" ? "◐ drained" : `✕ ${state}`;
}

export function renderFolded(container, status, { selected, onSelect, summaryEl }) {
  const listedByHost = new Map();
  for (const node of status.nodes || []) {
    if (!listedByHost.has(node.host)) listedByHost.set(node.host, []);
    listedByHost.get(node.host).push(node);
  }
  const hosts = (status.hosts || []).map((host) => {
    const listed = listedByHost.get(host.name) || [];
    const counts = hostCounts(host, listed);
    return { host, listed, counts, rank: troubleRank(host, counts) };
  });
  const shown = filterText ? hosts.filter((entry) => entry.host.name.toLowerCase().includes(filterText)) : hosts;
  shown.sort((a, b) => a.rank - b.rank || names.compare(a.host.name, b.host.name));
  writeSummary(summaryEl, status, hosts, shown.length);
  if (!shown.length) {
    const text = hosts.length ? `No host name contains “${filterText}”.` : "This farm has no hosts.";
    container.replaceChildren(h("p", { class: "empty", text }));
    return;
  }
  container.querySelector(":scope > .empty")?.remove();
  const context = { selected, onSelect, farmMax: maxRate(), roleOrder: (status.roles || []).map((r) => r.name) };
  const byName = new Map(shown.map((entry) => [entry.host.name, entry]));
  syncChildren(container, shown.map((entry) => entry.host.name), makeFold,
    (region, name) => updateFold(region, byName.get(name), status, context));
}

function writeSummary(el, status, hosts, shownCount) {
  if (!el) return;
  el.hidden = false;
  const total = hosts.reduce((sum, entry) => {
    for (const visual of ORDER) sum[visual] += entry.counts[visual];
    return sum;
  }, Object.fromEntries(ORDER.map((visual) => [visual, 0])));
  const trouble = hosts.filter((entry) => entry.rank < 4).length;
  const words = [
    `${status.nodes_total ?? 0} nodes on ${hosts.length} hosts: ${describe(total)}.`,
    trouble ? `${trouble} host${trouble === 1 ? "" : "s"} need${trouble === 1 ? "s" : ""} a look (shown first).` : "Every host is healthy.",
    "Open a host to see its nodes.",
  ];
  if (shownCount !== hosts.length) words.push(`Showing ${shownCount} of ${hosts.length} hosts.`);
  setText(el, words.join(" "));
}

function domId(name) {
  return name.replace(/[^a-zA-Z0-9_-]/g, "_");
}

function makeFold(name) {
  const id = domId(name);
  const region = h("section", { class: "host fold", "aria-labelledby": `fold-${id}` },
    h("h3", { class: "fold-title" },
      h("button", { type: "button", id: `fold-${id}`, class: "fold-toggle", "aria-expanded": "false",
                    "aria-controls": `fold-body-${id}`, onclick: () => toggleHost(name) },
        h("span", { class: "fold-line" },
          h("span", { class: "fold-name", text: name }),
          h("span", { class: "fold-state badge" })),
        h("span", { class: "fold-counts" }))),
    h("div", { class: "fold-body", id: `fold-body-${id}` }));
  region.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !isOpen(name)) return;
    event.preventDefault();
    closeHost(name);
    region.querySelector(".fold-toggle").focus();
  });
  return region;
}

function updateFold(region, entry, status, context) {
  const { host, listed, counts } = entry;
  const open = isOpen(host.name);
  const visual = worstVisual(counts);
  region.dataset.state = host.state;
  region.dataset.visual = visual;
  region.dataset.open = String(open);
  region.dataset.attention = String(listed.length > 0);
  const toggle = region.querySelector(".fold-toggle");
  toggle.setAttribute("aria-expanded", String(open));
  const total = ORDER.reduce((sum, key) => sum + counts[key], 0);
  toggle.setAttribute("aria-label", `${host.name}, host ${host.state}, ${total} node${total === 1 ? "" : "s"}: ` +
    `${describe(counts)}. ${open ? "Open: press to close." : "Press to open and see its nodes."}`);
  const badge = region.querySelector(".fold-state");
  badge.dataset.state = host.state;
  setText(badge, hostWord(host.state));
  renderCounts(region.querySelector(".fold-counts"), counts);
  const body = region.querySelector(".fold-body");
  if (open) renderOpen(body, host, status, context);
  else renderAttention(body, host, listed, context);
}

function renderCounts(el, counts) {
  const shown = ORDER.filter((visual) => counts[visual]);
  const key = shown.map((visual) => `${visual}:${counts[visual]}`).join(",");
  if (el.dataset.counts === key) return;
  el.dataset.counts = key;
  el.replaceChildren(...shown.map((visual) => h("span", { class: "count", dataset: { visual } },
    h("span", { class: "icon", "aria-hidden": "true", text: VISUALS[visual].icon }),
    h("span", { class: "count-n", text: String(counts[visual]) }),
    h("span", { class: "count-word", text: VISUALS[visual].label }))));
  if (!shown.length) el.replaceChildren(h("span", { class: "count-none", text: "no nodes" }));
}

function renderAttention(body, host, listed, context) {
  if (body.dataset.view !== "folded") {
    body.replaceChildren(h("ul", { class: "tiles attention", "aria-label": `Nodes on ${host.name} that need attention` }),
      h("p", { class: "more empty", hidden: true }));
    body.dataset.view = "folded";
  }
  const nodes = [...listed].sort(byRoleThenIndex);
  const head = nodes.slice(0, ATTENTION_SHOWN);
  const byId = new Map(head.map((node) => [node.id, node]));
  const list = body.querySelector(".tiles");
  list.hidden = !head.length;
  syncChildren(list, head.map((node) => node.id), makeTile, (item, id) => updateTile(item, byId.get(id), context));
  const more = body.querySelector(".more");
  more.hidden = nodes.length <= ATTENTION_SHOWN;
  setText(more, `and ${nodes.length - ATTENTION_SHOWN} more that need attention: open ${host.name} to see them all.`);
}

function renderOpen(body, host, status, context) {
  if (body.dataset.view !== "open") {
    body.replaceChildren(
      h("div", { class: "fold-open-head" },
        h("span", { class: "host-meta" }),
        h("button", { type: "button", class: "quiet fold-close", "aria-label": `Close ${host.name}`,
                      onclick: () => {
                        closeHost(host.name);
                        body.closest(".fold")?.querySelector(".fold-toggle")?.focus();
                      } }, "Close")),
      h("p", { class: "fold-note empty", role: "status" }),
      h("div", { class: "host-roles" }));
    body.dataset.view = "open";
  }
  const view = hostView(host.name);
  const nodes = nodesOfHost(host.name, status);
  const meta = [host.driver && `${host.driver} driver`, host.address, host.reason].filter(Boolean);
  setText(body.querySelector(".host-meta"), meta.join(" · "));
  const note = body.querySelector(".fold-note");
  const groups = body.querySelector(".host-roles");
  if (!nodes) {
    setText(note, view && view.error ? view.error : `Listing the nodes of ${host.name}…`);
    note.hidden = false;
    groups.replaceChildren();
    return;
  }
  note.hidden = !(view && view.error);
  if (view && view.error) setText(note, `${view.error} (showing the last list)`);
  renderRoleGroups(groups, [...nodes].sort(byRoleThenIndex), context);
}
