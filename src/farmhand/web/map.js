// The farm map: hosts as regions, nodes as tiles grouped by role. A tile says its state in
// words and an icon (not colour alone), carries a load meter, and is a button that opens
// the node's panel. Tiles are updated in place, so focus survives live updates.
//
// A large farm's status is folded (`nodes_complete` false: only the nodes that need
// attention are listed); its map is drawn by folded.js, hosts as counts until opened.

import { h, setText, syncChildren } from "./dom.js";
import { renderFolded } from "./folded.js";
import { loadOf, maxRate } from "./load.js";

export const VISUALS = {
  healthy: { icon: "✓", label: "healthy" },
  starting: { icon: "◔", label: "starting" },
  pending: { icon: "○", label: "pending" },
  failing: { icon: "✕", label: "failing" },
  draining: { icon: "↘", label: "draining" },
  stopping: { icon: "■", label: "stopping" },
};

// What a node looks like: the user's four words (starting, healthy, failing, draining),
// plus pending and stopping, from its state, health and why it stopped.
export function visualState(node) {
  if (node.health === "unhealthy") return "failing";
  if (node.state === "stopping") return node.on_stop === "restart" ? "failing" : "stopping";
  if (node.state === "draining") return "draining";
  if (node.state === "pending") return node.restarts > 0 ? "failing" : "pending";
  if (node.state === "starting") return "starting";
  return "healthy";
}

export function stateDetail(node) {
  const visual = visualState(node);
  if (visual === "failing" && node.state === "pending") return "restarting";
  if (visual === "failing" && node.state === "stopping") return "stopping to restart";
  if (visual === "failing") return "health check failing";
  if (node.mark === "replace") return "to be replaced";
  if (node.mark === "remove") return "to be stopped";
  if (visual === "healthy" && node.health === "unknown") return "running, not checked yet";
  return "";
}

function nodeIndex(id) {
  const tail = id.split("-").pop();
  return /^\d+$/.test(tail) ? Number(tail) : 0;
}

export function byRoleThenIndex(a, b) {
  return a.role.localeCompare(b.role) || nodeIndex(a.id) - nodeIndex(b.id) || a.id.localeCompare(b.id);
}

export function renderMap(container, status, context) {
  const mode = status.nodes_complete === false ? "folded" : "tiles";
  if (container.dataset.mode !== mode) {
    container.replaceChildren();
    container.dataset.mode = mode;
  }
  if (mode === "folded") renderFolded(container, status, context);
  else renderTiles(container, status, context);
}

function renderTiles(container, status, { selected, onSelect }) {
  const hosts = [...(status.hosts || [])];
  const known = new Set(hosts.map((host) => host.name));
  const strays = (status.nodes || []).filter((node) => !known.has(node.host));
  if (strays.length) hosts.push({ name: "(unknown host)", driver: "", state: "unknown", nodes: strays.length });
  if (!hosts.length) {
    container.replaceChildren(h("p", { class: "empty", text: "This farm has no hosts." }));
    return;
  }
  container.querySelector(":scope > .empty")?.remove();
  const farmMax = maxRate();
  const keys = hosts.map((host) => host.name);
  const byName = new Map(hosts.map((host) => [host.name, host]));
  syncChildren(container, keys, makeRegion, (region, name) => {
    const host = byName.get(name);
    const nodes = (status.nodes || [])
      .filter((node) => node.host === name || (name === "(unknown host)" && !known.has(node.host)))
      .sort(byRoleThenIndex);
    updateRegion(region, host, nodes, { selected, onSelect, farmMax, roleOrder: (status.roles || []).map((r) => r.name) });
  });
}

function makeRegion(name) {
  const titleId = `host-${name.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
  return h("section", { class: "host", "aria-labelledby": titleId },
    h("header", { class: "host-head" },
      h("h3", { id: titleId, class: "host-name" }),
      h("span", { class: "host-state badge" }),
      h("span", { class: "host-meta" })),
    h("div", { class: "host-roles" }));
}

function updateRegion(region, host, nodes, context) {
  setText(region.querySelector(".host-name"), host.name);
  const badge = region.querySelector(".host-state");
  badge.dataset.state = host.state;
  setText(badge, host.state === "up" ? "● up" : host.state === "drained" ? "◐ drained" : `✕ ${host.state}`);
  const meta = [host.driver && `${host.driver} driver`, host.address, `${nodes.length} node${nodes.length === 1 ? "" : "s"}`];
  if (host.reason) meta.push(host.reason);
  setText(region.querySelector(".host-meta"), meta.filter(Boolean).join(" · "));
  region.dataset.state = host.state;
  renderRoleGroups(region.querySelector(".host-roles"), nodes, context);
}

// One group of tiles per role (in the roles' order), under `groups`; `nodes` sorted.
export function renderRoleGroups(groups, nodes, context) {
  const roles = [...new Set(nodes.map((node) => node.role))]
    .sort((a, b) => context.roleOrder.indexOf(a) - context.roleOrder.indexOf(b));
  if (!roles.length) {
    if (!groups.querySelector(".empty")) groups.replaceChildren(h("p", { class: "empty", text: "No nodes on this host." }));
    return;
  }
  groups.querySelector(":scope > .empty")?.remove();
  syncChildren(groups, roles, makeGroup, (group, role) => {
    updateGroup(group, role, nodes.filter((node) => node.role === role), context);
  });
}

function makeGroup() {
  return h("div", { class: "role-group", role: "group" },
    h("h4", { class: "role-name" }),
    h("ul", { class: "tiles" }));
}

function updateGroup(group, role, nodes, context) {
  setText(group.querySelector(".role-name"), `${role} · ${nodes.length}`);
  group.setAttribute("aria-label", `role ${role}: ${nodes.length} node${nodes.length === 1 ? "" : "s"}`);
  const byId = new Map(nodes.map((node) => [node.id, node]));
  syncChildren(group.querySelector(".tiles"), nodes.map((node) => node.id), makeTile,
    (item, id) => updateTile(item, byId.get(id), context));
}

export function makeTile(id) {
  const button = h("button", { type: "button", class: "tile-button" },
    h("span", { class: "tile-top" },
      h("span", { class: "tile-id", text: id }),
      h("span", { class: "tile-icon", "aria-hidden": "true" })),
    h("span", { class: "tile-state" }),
    h("span", { class: "tile-load" },
      h("span", { class: "meter", "aria-hidden": "true" }, h("span", { class: "meter-fill" })),
      h("span", { class: "load-text" })));
  const item = h("li", { class: "tile", dataset: { node: id } }, button);
  return item;
}

export function updateTile(item, node, { selected, onSelect, farmMax }) {
  const visual = visualState(node);
  const look = VISUALS[visual];
  const detail = stateDetail(node);
  const load = loadOf(node, farmMax);
  item.dataset.visual = visual;
  item.dataset.state = node.state;
  item.dataset.health = node.health;
  item.dataset.pid = node.pid ?? "";
  item.dataset.restarts = node.restarts;
  const button = item.firstElementChild;
  button.onclick = () => onSelect(node.id);
  button.setAttribute("aria-pressed", String(selected === node.id));
  const restarted = node.restarts && visual !== "failing" ? `restarted ${node.restarts}×` : "";
  const words = [`${node.id}: ${look.label}`, detail, restarted, load.kind === "none" ? "" : load.text, `on ${node.host}`];
  button.setAttribute("aria-label", words.filter(Boolean).join(", "));
  button.title = node.reason ? `${node.id}: ${node.reason}` : node.id;
  setText(button.querySelector(".tile-icon"), look.icon);
  setText(button.querySelector(".tile-state"), [look.label, detail, restarted].filter(Boolean).join(" · "));
  setText(button.querySelector(".load-text"), load.kind === "none" ? "load –" : load.text);
  const level = Math.round(load.fraction * 100);
  button.querySelector(".meter-fill").style.width = `${level}%`;
  item.style.setProperty("--load", String(load.fraction.toFixed(2)));
  item.dataset.load = load.kind;
}
