// Load per node, for shading the map: CPU % when the status carries it (`cpu`, sampled by
// the controller every few seconds), else the node's
// requests/s through its role's load balancer, from the backend counters' growth.
//
// The status stream only pushes on a change, so "no new frame" means "counters did not
// move": calling `observe` on a timer with the last status and the current time lets a
// node's rate fall to zero when its traffic stops.

const WINDOW = 2.0; // seconds between the two counter readings a rate is taken from

const readings = new Map(); // node id -> { t, requests, rate }

function backendRequests(status) {
  const counts = new Map();
  for (const role of status.roles || []) {
    const backends = role.lb_stats && role.lb_stats.backends;
    if (!backends || typeof backends !== "object") continue;
    for (const [name, counters] of Object.entries(backends)) {
      if (counters && typeof counters.requests === "number") counts.set(name, counters.requests);
    }
  }
  return counts;
}

export function observe(status, now) {
  const counts = backendRequests(status);
  for (const [name, requests] of counts) {
    const seen = readings.get(name);
    if (!seen || requests < seen.requests) {
      readings.set(name, { t: now, requests, rate: seen ? seen.rate : 0 });
    } else if (now - seen.t >= WINDOW) {
      readings.set(name, { t: now, requests, rate: (requests - seen.requests) / (now - seen.t) });
    }
  }
  for (const name of readings.keys()) {
    if (!counts.has(name)) readings.delete(name);
  }
}

// { value, fraction, text } for a node: fraction in 0..1 for the meter, text for people.
export function loadOf(node, farmMaxRate) {
  if (typeof node.cpu === "number") {
    const cpu = Math.max(0, node.cpu);
    return { value: cpu, fraction: Math.min(1, cpu / 100), text: `CPU ${cpu.toFixed(0)}%`, kind: "cpu" };
  }
  const reading = readings.get(node.id);
  if (!reading) return { value: null, fraction: 0, text: "not measured yet", kind: "none" };
  const rate = reading.rate;
  return { value: rate, fraction: Math.min(1, rate / Math.max(1, farmMaxRate)), text: `${formatShort(rate)} req/s`, kind: "rps" };
}

export function maxRate() {
  let max = 0;
  for (const reading of readings.values()) max = Math.max(max, reading.rate);
  return max;
}

function formatShort(rate) {
  return rate >= 100 ? rate.toFixed(0) : rate.toFixed(1);
}
