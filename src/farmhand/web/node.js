// The node panel: what the selected node is, the changes a user can make to it (replace,
// stop, migrate to another host), and the tail of its log, refreshed while it is open.

import { change, readLog } from "./api.js";
import { formatClock, formatDuration, h, setText } from "./dom.js";
import { loadOf, maxRate } from "./load.js";
import { stateDetail, VISUALS, visualState } from "./map.js";
import { reportFailure, showToast } from "./notice.js";

const LOG_KEEP = 64 * 1024; // characters of log kept on screen
const LOG_EVERY = 2000;

let shown = null; // { id, el, offset, text, decoder, timer, confirmStop }

export function showNode(body, id) {
  if (shown && shown.id === id) return;
  closeNode();
  const el = buildPanel(id);
  body.replaceChildren(el);
  shown = { id, el, offset: 0, text: "", decoder: new TextDecoder(), timer: 0, confirmStop: false };
  refreshLog();
  shown.timer = setInterval(refreshLog, LOG_EVERY);
}

export function closeNode() {
  if (shown) clearInterval(shown.timer);
  shown = null;
}

export function selectedNode() {
  return shown ? shown.id : null;
}

function buildPanel(id) {
  const hostSelect = h("select", { id: "migrate-host", class: "migrate-host" });
  return h("div", { class: "node-view", dataset: { node: id } },
    h("div", { class: "node-title" },
      h("h3", { class: "node-id", text: id }),
      h("span", { class: "badge node-visual" })),
    h("p", { class: "empty gone-note", hidden: true }),
    h("dl", { class: "facts" }),
    h("div", { class: "actions", role: "group", "aria-label": `Change ${id}` },
      h("button", { type: "button", class: "replace", onclick: () => act("replace") },
        "Replace"),
      h("button", { type: "button", class: "stop danger", onclick: () => askStop() }, "Stop"),
      h("span", { class: "confirm", hidden: true },
        h("span", { class: "confirm-text" }),
        h("button", { type: "button", class: "danger confirm-yes", onclick: () => act("stop") }, "Yes, stop it"),
        h("button", { type: "button", class: "quiet confirm-no", onclick: () => cancelStop() }, "Cancel"))),
    h("form", { class: "migrate", hidden: true, onsubmit: (event) => { event.preventDefault(); migrate(); } },
      h("label", { for: "migrate-host" }, "Move to host"),
      hostSelect,
      h("button", { type: "submit", class: "migrate-go" }, "Migrate")),
    h("div", { class: "log-head" },
      h("h4", { id: "log-title", text: "Log (tail)" }),
      h("button", { type: "button", class: "quiet", "aria-label": `Refresh the log of ${id}`, onclick: () => refreshLog() }, "Refresh")),
    h("pre", { class: "log", tabindex: "0", "aria-labelledby": "log-title" }, h("code", { text: "loading…" })));
}

export function updateNode(status, clockOffset) {
  if (!shown) return;
  const node = (status.nodes || []).find((n) => n.id === shown.id);
  const el = shown.el;
  const badge = el.querySelector(".node-visual");
  if (!node) {
    badge.dataset.visual = "gone";
    setText(badge, "gone");
    const note = el.querySelector(".gone-note");
    setText(note, `${shown.id} is no longer part of the farm (stopped, replaced or moved). Its log stays readable.`);
    note.hidden = false;
    el.querySelector(".facts").hidden = true;
    el.querySelector(".actions").hidden = true;
    el.querySelector(".migrate").hidden = true;
    return;
  }
  const visual = visualState(node);
  badge.dataset.visual = visual;
  setText(badge, `${VISUALS[visual].icon} ${VISUALS[visual].label}`);
  el.querySelector(".gone-note").hidden = true;
  el.querySelector(".facts").hidden = false;
  renderFacts(el.querySelector(".facts"), node, clockOffset);
  el.querySelector(".actions").hidden = false;
  renderMigrate(el.querySelector(".migrate"), node, status.hosts || []);
}

function renderFacts(dl, node, clockOffset) {
  const now = Date.now() / 1000 - clockOffset;
  const load = loadOf(node, maxRate());
  const rows = [
    ["role", node.role],
    ["host", node.host],
    ["state", [node.state, stateDetail(node)].filter(Boolean).join(" · ") +
      (node.state_since ? ` (since ${formatClock(node.state_since)})` : "")],
    ["health", node.health],
    ["pid · port", `${node.pid ?? "–"} · ${node.port ?? "–"}`],
    ["uptime", node.started_at && node.pid ? formatDuration(now - node.started_at) : "–"],
    ["restarts", String(node.restarts)],
    ["load", load.text],
    ["reason", node.reason || "–"],
  ];
  const fresh = rows.map(([term, value]) => [h("dt", { text: term }), h("dd", { text: value })]).flat();
  const current = [...dl.children].map((child) => child.textContent).join("|");
  if (current !== fresh.map((child) => child.textContent).join("|")) dl.replaceChildren(...fresh);
}

function renderMigrate(form, node, hosts) {
  const others = hosts.filter((host) => host.name !== node.host);
  form.hidden = hosts.length < 2;
  if (form.hidden) return;
  const select = form.querySelector("select");
  const names = others.map((host) => `${host.name}|${host.state}`).join(",");
  if (select.dataset.names === names) return;
  const chosen = select.value;
  select.replaceChildren(...others.map((host) => h("option", {
    value: host.name, text: host.state === "up" ? host.name : `${host.name} (${host.state})`,
  })));
  if (others.some((host) => host.name === chosen)) select.value = chosen;
  select.dataset.names = names;
}

function askStop() {
  const confirm = shown.el.querySelector(".confirm");
  setText(confirm.querySelector(".confirm-text"), `Stop ${shown.id} for good (its role then wants one fewer)?`);
  confirm.hidden = false;
  confirm.querySelector(".confirm-yes").focus();
}

function cancelStop() {
  if (!shown) return;
  shown.el.querySelector(".confirm").hidden = true;
  shown.el.querySelector(".stop").focus();
}

async function act(verb) {
  if (!shown) return;
  const id = shown.id;
  shown.el.querySelector(".confirm").hidden = true;
  try {
    const answer = await change(`/api/nodes/${encodeURIComponent(id)}/${verb}`);
    showToast(answer.message || `${id}: ${verb} requested`);
  } catch (error) {
    reportFailure(`${verb === "stop" ? "Stopping" : "Replacing"} ${id}`, error);
  }
}

async function migrate() {
  if (!shown) return;
  const id = shown.id;
  const host = shown.el.querySelector(".migrate-host").value;
  try {
    const answer = await change(`/api/nodes/${encodeURIComponent(id)}/migrate`, { host });
    showToast(answer.message || `${id} is moving to ${host}`);
  } catch (error) {
    reportFailure(`Moving ${id} to ${host}`, error);
  }
}

async function refreshLog() {
  const view = shown;
  if (!view) return;
  try {
    // Read until a short answer: the API returns at most a chunk per call.
    for (let round = 0; round < 64; round++) {
      const bytes = await readLog(view.id, view.offset);
      if (shown !== view) return;
      if (!bytes.length) break;
      view.offset += bytes.length;
      view.text = (view.text + view.decoder.decode(bytes, { stream: true })).slice(-LOG_KEEP);
      if (bytes.length < 65536) break;
    }
    showLog(view, view.text || "(the log is empty)");
  } catch (error) {
    if (shown === view) showLog(view, `could not read the log: ${error.message}`);
  }
}

function showLog(view, text) {
  const pre = view.el.querySelector(".log");
  const code = pre.querySelector("code");
  if (code.textContent === text) return;
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  code.textContent = text;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}
