// The dashboard's entry point: takes the token from the URL, follows the status stream,
// and re-renders the map, roles, node panel and charts when the farm changes. The stream
// sends a whole `status` first, then `patch`es (only the host and node rows that changed).

import { adoptTokenFromUrl, getJson } from "./api.js";
import { addSample, drawCharts, setRoles, setSamples } from "./charts.js";
import { setText } from "./dom.js";
import { noteRoles, startEvents } from "./events.js";
import { setHostFilter } from "./folded.js";
import { followHost, hostView, initHostView, knownNodes, noteStatus } from "./hostview.js";
import { observe } from "./load.js";
import { renderMap } from "./map.js";
import { closeNode, selectedNode, showNode, updateNode } from "./node.js";
import { initNotices, renderTokenState } from "./notice.js";
import { renderRoles } from "./roles.js";
import { openStream } from "./stream.js";

const $ = (id) => document.getElementById(id);

const view = {
  status: null,
  selectedRow: null, // the selected node's last known row (a folded status may not list it)
  clockOffset: 0, // browser clock minus the controller's clock, in seconds
  streams: { status: false, events: false },
};

function serverNow() {
  return Date.now() / 1000 - view.clockOffset;
}

function folded(status) {
  return status.nodes_complete === false;
}

function render() {
  const status = view.status;
  if (!status) return;
  setText($("farm-name"), status.shutting_down ? `${status.farm} (shutting down)` : status.farm);
  document.title = `${status.farm} · farmhand`;
  $("map-summary").hidden = !folded(status);
  $("host-find").hidden = !folded(status);
  renderMap($("hosts"), status, { selected: selectedNode(), onSelect: select, summaryEl: $("map-summary") });
  renderRoles($("roles-body"), status, render, serverNow());
  updateNode(panelStatus(status), view.clockOffset);
}

// A folded status lists only the nodes that need attention: the node panel also knows those
// of the hosts the page fetched (the open ones, and the selected node's). Until the selected
// node's host has answered, its last row stands in (it is not "gone" for having healed).
function panelStatus(status) {
  if (!folded(status)) return status;
  const nodes = knownNodes(status);
  const id = selectedNode();
  const row = id && nodes.find((node) => node.id === id);
  if (row) view.selectedRow = row;
  else if (id && view.selectedRow?.id === id && hostView(view.selectedRow.host)?.loading) nodes.push(view.selectedRow);
  return { ...status, nodes };
}

function select(id) {
  if (selectedNode() === id) {
    followHost(null);
    closeNode();
    $("node-body").replaceChildren();
    $("node-body").append(Object.assign(document.createElement("p"), {
      className: "empty", textContent: "Select a node on the map to see it, replace, stop or move it, and read its log.",
    }));
  } else {
    const node = view.status && knownNodes(view.status).find((n) => n.id === id);
    view.selectedRow = node || null;
    followHost(node && folded(view.status) ? node.host : null);
    showNode($("node-body"), id);
  }
  render();
}

// The page's copy of the status, with a patch's rows put in place by key.
export function applyPatch(base, patch) {
  const merged = {};
  for (const [key, value] of Object.entries(patch)) if (!key.endsWith("_gone")) merged[key] = value;
  for (const [field, key] of [["hosts", "name"], ["nodes", "id"]]) {
    const fresh = new Map((patch[field] || []).map((row) => [row[key], row]));
    const gone = new Set(patch[`${field}_gone`] || []);
    const rows = [];
    for (const row of base[field] || []) {
      if (gone.has(row[key])) continue;
      rows.push(fresh.get(row[key]) || row);
      fresh.delete(row[key]);
    }
    merged[field] = rows.concat([...fresh.values()]);
  }
  return merged;
}

function onStatus(status) {
  view.status = status;
  noteStatus(status);
  view.clockOffset = Date.now() / 1000 - status.time;
  observe(status, status.time);
  setRoles((status.roles || []).map((role) => role.name));
  noteRoles((status.roles || []).map((role) => role.name));
  render();
}

function showConnection() {
  const el = $("connection");
  const { status, events } = view.streams;
  const state = status && events ? "live" : status || events ? "partial" : "offline";
  el.dataset.state = state;
  setText(el, state === "live" ? "● live" : state === "partial" ? "◐ reconnecting…" : "○ not connected (retrying)");
}

function followStatus() {
  openStream("/api/status/stream", {
    status: (message) => onStatus(JSON.parse(message.data)),
    patch: (message) => {
      if (view.status) onStatus(applyPatch(view.status, JSON.parse(message.data)));
    },
    sample: (message) => {
      addSample(JSON.parse(message.data));
      redrawCharts();
    },
  }, (open) => { view.streams.status = open; showConnection(); });
}

function redrawCharts() {
  drawCharts($("chart-nodes"), $("chart-rps"), serverNow());
}

async function loadHistory() {
  try {
    const history = await getJson("/api/history");
    setSamples(history.samples || []);
  } catch {
    setSamples([]);
  }
  redrawCharts();
}

function everySecond() {
  if (!view.status) return;
  observe(view.status, serverNow()); // no frame means unchanged counters: rates decay
  render();
}

function main() {
  adoptTokenFromUrl();
  initNotices();
  window.addEventListener("hashchange", () => { // a dashboard link pasted into this tab
    adoptTokenFromUrl();
    renderTokenState();
  });
  initHostView(render);
  $("host-find").addEventListener("submit", (event) => event.preventDefault());
  $("host-find-input").addEventListener("input", (event) => {
    setHostFilter(event.target.value);
    render();
  });
  followStatus();
  loadHistory();
  startEvents({
    listEl: $("events"), roleSelect: $("filter-role"), kindSelect: $("filter-kind"),
    onStream: (up) => { view.streams.events = up; showConnection(); },
  });
  setInterval(everySecond, 1000);
  let width = 0;
  new ResizeObserver(([entry]) => {
    if (Math.abs(entry.contentRect.width - width) < 1) return;
    width = entry.contentRect.width;
    redrawCharts();
  }).observe($("chart-nodes"));
}

main();
