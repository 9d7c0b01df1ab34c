// Hosts opened on a folded map (a farm above the status stream's fold line, whose status
// lists only the nodes that need attention). An open host's whole node list comes from
// `/api/status?host=NAME&nodes=all`: fetched when it opens, again when the stream says its
// counts changed (at most once a second), and every few seconds while it stays open. The
// selected node's host is followed the same way (without showing its tiles), so the node
// panel keeps knowing a node that is healthy, and so not in the stream.

import { getJson } from "./api.js";

const REFRESH_MS = 3000; // an open host's list is at most this old when nothing changes
const SOONEST_MS = 1000; // and fetched at most this often when its counts keep changing
const TICK_MS = 250;

const entries = new Map(); // host name -> { open, nodes, time, error, loading, due, last, statesKey }
let followed = null;
let changed = () => {};

export function initHostView(onChange) {
  changed = onChange;
  setInterval(fetchDue, TICK_MS);
}

export function isOpen(name) {
  return Boolean(entries.get(name)?.open);
}

export function toggleHost(name) {
  if (isOpen(name)) closeHost(name);
  else openHost(name);
}

export function openHost(name) {
  entry(name).open = true;
  fetchHost(name);
  changed();
}

export function closeHost(name) {
  const found = entries.get(name);
  if (!found || !found.open) return;
  found.open = false;
  forgetUnused(name);
  changed();
}

// Follow the selected node's host (null: none); its list feeds the node panel.
export function followHost(name) {
  const before = followed;
  followed = name;
  if (before && before !== name) forgetUnused(before);
  if (name && !entries.get(name)?.nodes) {
    entry(name);
    fetchHost(name);
  }
}

// { nodes, error, loading } of a host whose list was asked for, else null.
export function hostView(name) {
  const found = entries.get(name);
  return found ? { nodes: found.nodes, error: found.error, loading: found.nodes === null } : null;
}

// A host's nodes: its fetched list, each row replaced by the stream's when the stream is
// newer (the stream lists every node of the host that needs attention).
export function nodesOfHost(name, status) {
  const found = entries.get(name);
  if (!found || !found.nodes) return null;
  if (!(status.time >= found.time)) return found.nodes;
  const fresh = new Map((status.nodes || []).filter((node) => node.host === name).map((node) => [node.id, node]));
  const rows = found.nodes.map((node) => {
    const newer = fresh.get(node.id);
    fresh.delete(node.id);
    return newer || node;
  });
  return rows.concat([...fresh.values()]);
}

// Every node the page knows of: the stream's, and those of the hosts it fetched.
export function knownNodes(status) {
  const rows = new Map((status.nodes || []).map((node) => [node.id, node]));
  for (const name of entries.keys()) {
    for (const node of nodesOfHost(name, status) || []) rows.set(node.id, node);
  }
  return [...rows.values()];
}

// A new status arrived: hosts whose counts changed are fetched again soon; hosts that left
// the farm are closed.
export function noteStatus(status) {
  const rows = new Map((status.hosts || []).map((host) => [host.name, host]));
  for (const [name, found] of entries) {
    const row = rows.get(name);
    if (!row) {
      entries.delete(name);
      continue;
    }
    const key = JSON.stringify(row.states || {}) + row.state;
    if (found.statesKey !== undefined && key !== found.statesKey) found.due = Math.min(found.due, found.last + SOONEST_MS);
    found.statesKey = key;
  }
}

function entry(name) {
  if (!entries.has(name)) {
    entries.set(name, { open: false, nodes: null, time: 0, error: "", loading: false, due: 0, last: 0, statesKey: undefined });
  }
  return entries.get(name);
}

function forgetUnused(name) {
  const found = entries.get(name);
  if (found && !found.open && followed !== name) entries.delete(name);
}

function fetchDue() {
  const now = Date.now();
  for (const [name, found] of entries) {
    if (!found.loading && now >= found.due) fetchHost(name);
  }
}

async function fetchHost(name) {
  const found = entries.get(name);
  if (!found || found.loading) return;
  found.loading = true;
  found.last = Date.now();
  try {
    const answer = await getJson(`/api/status?host=${encodeURIComponent(name)}&nodes=all`);
    found.nodes = answer.nodes || [];
    found.time = answer.time;
    found.error = "";
  } catch (error) {
    found.error = `could not list the nodes of ${name}: ${error.message}`;
  } finally {
    found.loading = false;
    found.due = Date.now() + REFRESH_MS;
    if (entries.get(name) === found) changed();
  }
}
