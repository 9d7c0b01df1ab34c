// Line charts of the last 15 minutes, drawn as plain SVG. Each role keeps one colour and
// one dash pattern everywhere, and the legend says each line's current value in words,
// so the charts read without colour too.

import { formatRate, h, svg } from "./dom.js";

const WINDOW = 15 * 60;
const HEIGHT = 170;
const PAD = { top: 12, right: 14, bottom: 24, left: 40 };
const COLOURS = ["#0b6bcb", "#c75d00", "#10855f", "#a6427c", "#5a55c9", "#8a6d00", "#3b7a99", "#b32d2d"];
const DASHES = ["", "7 4", "2 3", "10 3 2 3"];

let samples = [];
let roleOrder = [];

export function styleOf(role) {
  let index = roleOrder.indexOf(role);
  if (index < 0) {
    roleOrder.push(role);
    index = roleOrder.length - 1;
  }
  return { colour: COLOURS[index % COLOURS.length], dash: DASHES[Math.floor(index / 2) % DASHES.length] };
}

export function setRoles(names) {
  roleOrder = [...names, ...roleOrder.filter((name) => !names.includes(name))];
}

export function setSamples(list) {
  samples = [...list].sort((a, b) => a.t - b.t);
}

export function addSample(sample) {
  if (samples.length && sample.t <= samples[samples.length - 1].t) return;
  samples.push(sample);
  const oldest = sample.t - WINDOW;
  while (samples.length && samples[0].t < oldest) samples.shift();
}

export function drawCharts(nodesBox, rpsBox, now) {
  draw(nodesBox, "nodes", now, { unit: "nodes", integer: true, empty: "No samples yet: the first comes within seconds." });
  draw(rpsBox, "rps", now, { unit: "req/s", integer: false, empty: "No role has a load balancer, so there are no requests to count." });
}

function seriesOf(key) {
  const roles = new Set();
  for (const sample of samples) {
    for (const [role, value] of Object.entries(sample[key] || {})) if (value !== null) roles.add(role);
  }
  roles.forEach(styleOf);
  return [...roles].sort((a, b) => roleOrder.indexOf(a) - roleOrder.indexOf(b)).map((role) => ({
    role,
    points: samples.filter((s) => s[key] && s[key][role] !== null && s[key][role] !== undefined).map((s) => [s.t, s[key][role]]),
  }));
}

function niceMax(value, integer) {
  if (integer && value <= 10) return Math.max(2, Math.ceil(value) + (Math.ceil(value) % 2)); // even: a whole middle tick
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    const candidate = step * power;
    if (candidate >= value) return integer ? Math.ceil(candidate) : candidate;
  }
  return value;
}

function draw(box, key, now, { unit, integer, empty }) {
  const series = seriesOf(key);
  const width = Math.max(240, box.clientWidth || 480);
  if (!series.length) {
    box.replaceChildren(h("p", { class: "empty", text: empty }));
    return;
  }
  const t1 = now;
  const t0 = now - WINDOW;
  const peak = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const yMax = niceMax(peak, integer);
  const x = (t) => PAD.left + ((t - t0) / WINDOW) * (width - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v / yMax) * (HEIGHT - PAD.top - PAD.bottom);
  const grid = [];
  for (const fraction of integer && yMax % 2 ? [0, 1] : [0, 0.5, 1]) {
    const value = yMax * fraction;
    grid.push(svg("line", { x1: PAD.left, x2: width - PAD.right, y1: y(value), y2: y(value), class: "grid" }));
    grid.push(svg("text", { x: PAD.left - 6, y: y(value) + 4, class: "tick", "text-anchor": "end" },
      integer ? String(Math.round(value)) : String(Number(value.toPrecision(3)))));
  }
  for (const minutes of [15, 10, 5, 0]) {
    const t = t1 - minutes * 60;
    grid.push(svg("text", { x: x(t), y: HEIGHT - 6, class: "tick", "text-anchor": minutes === 15 ? "start" : minutes === 0 ? "end" : "middle" },
      minutes ? `−${minutes} min` : "now"));
  }
  const lines = series.map(({ role, points }) => {
    const { colour, dash } = styleOf(role);
    const path = stepPath(points.filter((p) => p[0] >= t0), x, y, integer);
    return svg("path", { d: path, class: "line", stroke: colour, "stroke-dasharray": dash || null, "data-role": role });
  });
  const latest = series.map(({ role, points }) => `${role} ${describe(points, integer, unit)}`);
  const chart = svg("svg", { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img",
    "aria-label": `${unit} per role over the last 15 minutes; now: ${latest.join(", ")}` }, ...grid, ...lines);
  const legend = h("ul", { class: "chart-legend" }, series.map(({ role, points }) => {
    const { colour, dash } = styleOf(role);
    const swatch = svg("svg", { width: 26, height: 10, "aria-hidden": "true" },
      svg("line", { x1: 1, x2: 25, y1: 5, y2: 5, stroke: colour, "stroke-width": 3, "stroke-dasharray": dash || null }));
    return h("li", {}, swatch, h("span", { class: "legend-role", text: role }),
      h("span", { class: "legend-value", text: describe(points, integer, unit) }));
  }));
  box.replaceChildren(chart, legend);
}

// Node counts change in steps, so they are drawn as steps; rates as straight segments.
function stepPath(points, x, y, steps) {
  let d = "";
  points.forEach(([t, v], index) => {
    if (index === 0) d += `M${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    else if (steps) d += `H${x(t).toFixed(1)}V${y(v).toFixed(1)}`;
    else d += `L${x(t).toFixed(1)},${y(v).toFixed(1)}`;
  });
  return d;
}

// The newest value in words: "3 nodes", "1 node", "12.5 req/s".
function describe(points, integer, unit) {
  if (!points.length) return `– ${unit}`;
  const value = points[points.length - 1][1];
  if (!integer) return `${formatRate(value)} ${unit}`;
  const count = Math.round(value);
  return `${count} ${count === 1 ? unit.replace(/s$/, "") : unit}`;
}
