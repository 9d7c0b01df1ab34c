// The roles table: wanted / running / healthy, bounds, the load balancer (with the HTTPS
// certificate it serves, and for a pair which host holds its address) and its requests/s,
// and buttons that scale a role by one within its min/max.

import { change } from "./api.js";
import { formatDuration, formatRate, h, setText, syncChildren } from "./dom.js";
import { reportFailure, showToast } from "./notice.js";

// Scale requests answered but not yet seen in a status frame: role -> { count, at }.
// They show at once (so quick clicks count from the new number), and give way to the
// status when it agrees or after a few seconds (someone else may have scaled too).
const asked = new Map();
const ASKED_FOR = 5000;

// `now`: the controller's clock as the page reckons it (certificates' time left).
export function renderRoles(tbody, status, onChanged, now = status.time) {
  const roles = status.roles || [];
  if (!roles.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty", text: "This farm has no roles." })));
    return;
  }
  tbody.querySelector(":scope > tr:not([data-key])")?.remove();
  const byName = new Map(roles.map((role) => [role.name, role]));
  syncChildren(tbody, roles.map((role) => role.name), makeRow, (row, name) => updateRow(row, byName.get(name), onChanged, now));
}

// Each cell carries its column's name (data-label): on a phone-wide screen the table
// reflows into one card per role and shows the names beside the values (style.css).
function makeRow(name) {
  const down = h("button", { type: "button", class: "scale-down", text: "−" });
  const up = h("button", { type: "button", class: "scale-up", text: "+" });
  return h("tr", { dataset: { role: name } },
    h("th", { scope: "row", class: "role-cell" }, h("span", { class: "role-title", text: name }), h("span", { class: "role-note" })),
    h("td", { class: "counts", dataset: { label: "Nodes (want · run · ok)" } }),
    h("td", { class: "bounds", dataset: { label: "Min–max" } }),
    h("td", { class: "lb", dataset: { label: "Load balancer" } },
      h("div", { class: "lb-body" }, h("span", { class: "lb-text" }), makePair(), makeCert())),
    h("td", { class: "rps num", dataset: { label: "Load" } }),
    h("td", { class: "scale", dataset: { label: "Scale" } }, h("div", { class: "stepper" }, down, h("output", { class: "wanted" }), up)));
}

// "1–4" for a role with min/max; "fixed 3" for one with a count in the farm file (its
// bounds are 0 and none, which said "0–∞": true for `scale`, but not what the file says).
function boundsText(role) {
  if (typeof role.count === "number") return `fixed ${role.count}`;
  return `${role.min ?? 0}–${role.max ?? "∞"}`;
}

function wantedOf(role) {
  const entry = asked.get(role.name);
  if (entry && (entry.count === role.wanted || Date.now() - entry.at > ASKED_FOR)) asked.delete(role.name);
  return asked.has(role.name) ? entry.count : role.wanted;
}

function updateRow(row, role, onChanged, now) {
  const wanted = wantedOf(role);
  const counts = row.querySelector(".counts");
  setText(counts, `${wanted} · ${role.running} · ${role.healthy}`);
  counts.setAttribute("aria-label", `${wanted} wanted, ${role.running} running, ${role.healthy} healthy`);
  counts.dataset.settled = String(wanted === role.healthy && wanted === role.running);
  const bounds = row.querySelector(".bounds");
  setText(bounds, boundsText(role));
  bounds.title = typeof role.count === "number"
    ? `count = ${role.count} in the farm file; scale changes it by hand` : "min and max in the farm file";
  const note = row.querySelector(".role-note");
  setText(note, roleNote(role));
  note.dataset.tone = role.failures ? "warn" : "info";
  updateLb(row.querySelector(".lb"), role);
  updatePair(row.querySelector(".pair"), role.lb_pair);
  updateCert(row.querySelector(".cert"), role, now);
  const load = row.querySelector(".rps");
  setText(load, loadText(role));
  load.dataset.rate = String(requestRate(role) ?? "");
  const output = row.querySelector(".wanted");
  setText(output, wanted);
  output.setAttribute("aria-label", `${role.name} wants ${wanted}`);
  setupButton(row.querySelector(".scale-down"), role, wanted - 1, onChanged);
  setupButton(row.querySelector(".scale-up"), role, wanted + 1, onChanged);
}

function roleNote(role) {
  const plural = role.failures === 1 ? "" : "s";
  if (role.backoff_until) return `backing off after ${role.failures} early failure${plural}`;
  if (role.failures) return `${role.failures} early failure${plural}`;
  if (role.autoscale && role.autoscale.reason) return `autoscale: ${role.autoscale.reason}`;
  return "";
}

// Requests/s as the server picked it for the whole page (api/live.py role_request_rate:
// the charts' samples use the same figure, so the table and the charts agree).
export function requestRate(role) {
  return typeof role.requests_per_s === "number" ? role.requests_per_s : null;
}

function loadText(role) {
  const parts = [];
  const rate = requestRate(role);
  if (role.lb) parts.push(`${formatRate(rate)} req/s`);
  const cpu = role.metrics && role.metrics.cpu;
  if (typeof cpu === "number") parts.push(`CPU ${cpu.toFixed(0)}%`);
  return parts.join(" · ") || "–";
}

function updateLb(cell, role) {
  const text = cell.querySelector(".lb-text");
  if (!role.lb) {
    setText(text, "none");
    cell.dataset.state = "none";
    return;
  }
  const stats = role.lb_stats;
  const parts = [role.lb, role.lb_mode];
  if (stats && typeof stats.engine === "string") parts.push(stats.engine);
  if (!stats) parts.push("not answering");
  setText(text, parts.filter(Boolean).join(" · "));
  cell.dataset.state = stats ? "up" : "down";
}

// A load-balancer pair (status `lb_pair`, issue 14): its floating address, the member that
// holds it, and every member's VRRP state and balancer. No holder is shown as a fault: the
// address answers nowhere.
function makePair() {
  return h("div", { class: "pair", hidden: true },
    h("span", { class: "pair-vip", role: "status" }),
    h("ul", { class: "pair-members" }));
}

function updatePair(el, pair) {
  el.hidden = !pair;
  if (!pair) return;
  const vip = el.querySelector(".pair-vip");
  setText(vip, pair.holder ? `address ${pair.vip} on ${pair.holder}` : `address ${pair.vip}: held by no member`);
  el.dataset.tone = pair.holder ? "ok" : "bad";
  const members = pair.members || {};
  syncChildren(el.querySelector(".pair-members"), Object.keys(members),
    (name) => h("li", { dataset: { member: name } }),
    (li, name) => {
      const member = members[name] || {};
      const state = member.state || "unknown";
      const parts = [name, name === pair.holder ? "holds the address" : state.toLowerCase()];
      if (member.balancer && member.balancer !== "running") parts.push(`balancer ${member.balancer}`);
      if (member.reachable === false) parts.push("out of reach");
      setText(li, parts.join(" · "));
      li.title = member.error || (member.since ? `${state} since ${new Date(member.since * 1000).toLocaleString()}` : "");
      li.dataset.state = name === pair.holder ? "holder"
        : member.balancer === "down" || member.reachable === false || state === "FAULT" ? "bad" : "standby";
    });
}

// The certificate an HTTPS role's balancer serves (status `tls`): its names, issuer, end of
// validity with the time left, and a warning when a third of its lifetime or less is left
// (renewal is due, issue 15) or its last renewal or reload failed (with the reason, which
// the farm's events carry too). The balancer keeps serving it meanwhile.
function makeCert() {
  return h("div", { class: "cert", hidden: true },
    h("span", { class: "cert-names" }),
    h("span", { class: "cert-issuer" }),
    h("span", { class: "cert-expiry" }),
    h("span", { class: "cert-failure", role: "status" }));
}

const PLACEHOLDER = "farmhand placeholder";

// "CN=Pebble Intermediate CA 1d4e,O=..." -> "Pebble Intermediate CA 1d4e".
function issuerName(issuer) {
  if (typeof issuer !== "string") return "–";
  const cn = issuer.match(/(?:^|,)CN=((?:\\,|[^,])*)/);
  const org = issuer.match(/(?:^|,)O=((?:\\,|[^,])*)/);
  return ((cn && cn[1]) || (org && org[1]) || issuer).replace(/\\(.)/g, "$1");
}

function namesText(names) {
  if (!names.length) return "no certificate yet";
  return names.length > 3 ? `${names.slice(0, 3).join(", ")} +${names.length - 3} more` : names.join(", ");
}

// The certificate's state at `now`: "ok", "renew" (a third of its lifetime or less left),
// "expired", "placeholder" (a stand-in until ACME's first certificate) or "missing".
export function certState(tls, now) {
  if (typeof tls.not_after !== "number") return "missing";
  if (tls.self_signed && typeof tls.issuer === "string" && tls.issuer.includes(PLACEHOLDER)) return "placeholder";
  const left = tls.not_after - now;
  if (left <= 0) return "expired";
  const lifetime = tls.not_after - (tls.not_before ?? tls.not_after);
  return lifetime > 0 && left < lifetime / 3 ? "renew" : "ok";
}

function updateCert(el, role, now) {
  const tls = role.tls;
  el.hidden = !tls;
  if (!tls) return;
  const names = tls.names || [];
  const state = certState(tls, now);
  const failure = tls.last_failure;
  el.dataset.state = state;
  el.dataset.tone = state === "expired" || state === "missing" ? "bad" : failure || state !== "ok" ? "warn" : "ok";
  const namesEl = el.querySelector(".cert-names");
  setText(namesEl, `TLS: ${namesText(names)}`);
  namesEl.title = names.join(", ");
  const issuer = el.querySelector(".cert-issuer");
  setText(issuer, state === "placeholder" ? "placeholder (self-signed) until the first certificate"
    : `issuer ${issuerName(tls.issuer)}${tls.self_signed ? " (self-signed)" : ""}`);
  issuer.title = tls.issuer || "";
  const expiry = el.querySelector(".cert-expiry");
  if (typeof tls.not_after === "number") {
    const left = tls.not_after - now;
    const date = new Date(tls.not_after * 1000).toISOString().slice(0, 16).replace("T", " ");
    const when = left > 0 ? `${formatDuration(left)} left` : `expired ${formatDuration(-left)} ago`;
    const renew = state === "renew" ? " · renewal due" : "";
    setText(expiry, `until ${date} UTC (${when})${renew}`);
    expiry.dataset.left = String(Math.round(left));
  } else {
    setText(expiry, "");
  }
  const failed = el.querySelector(".cert-failure");
  failed.hidden = !failure;
  setText(failed, failure ? `⚠ last attempt failed: ${failure.message}` : "");
  failed.title = failure ? `at ${new Date(failure.ts * 1000).toLocaleString()}` : "";
}

function setupButton(button, role, count, onChanged) {
  const direction = button.classList.contains("scale-up") ? "up" : "down";
  const outside = count < (role.min ?? 0) || (role.max !== null && role.max !== undefined && count > role.max);
  button.disabled = outside || count < 0;
  const limit = direction === "up" ? `its max is ${role.max}` : `its min is ${role.min ?? 0}`;
  const label = outside ? `Scale ${role.name} ${direction}: not possible, ${limit}` : `Scale ${role.name} ${direction} to ${count}`;
  button.setAttribute("aria-label", label);
  button.title = label;
  button.onclick = () => scale(role.name, count, onChanged);
}

async function scale(name, count, onChanged) {
  try {
    const answer = await change(`/api/roles/${encodeURIComponent(name)}/scale`, { count });
    asked.set(name, { count: answer.after ?? count, at: Date.now() });
    showToast(`Role ${name}: ${answer.before ?? "?"} → ${answer.after ?? count} nodes`);
    onChanged();
  } catch (error) {
    reportFailure(`Scaling ${name} to ${count}`, error);
  }
}
