// Talking to the farm's API. Reads are open; every change carries the token as
// `Authorization: Bearer`. The token arrives in the URL fragment (`#token=...`, printed by
// `farmhand up`; fragments never reach a server or a Referer), is kept in sessionStorage
// (this tab only) and is removed from the address bar so it is not bookmarked or shared.

const TOKEN_KEY = "farmhand.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }

  get isTokenProblem() {
    return this.status === 401 || this.status === 403;
  }
}

export function adoptTokenFromUrl() {
  const match = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (!match) return;
  setToken(decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  const clean = value.trim();
  if (clean) sessionStorage.setItem(TOKEN_KEY, clean);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// A read that has not answered within this long is given up (and said), rather than leaving
// the part of the page that waits on it empty for ever.
const READ_WITHIN_MS = 10000;

export async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, signal: AbortSignal.timeout(READ_WITHIN_MS) });
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return response.json();
}

// POST a change. Resolves to the API's answer; rejects with an ApiError carrying the
// API's own error text (which names the field at fault, or the token problem).
export async function change(path, body = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  let response;
  try {
    response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, `the farm's API did not answer (${error.message}); is the farm still up?`);
  }
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return response.json().catch(() => ({}));
}

async function errorText(response) {
  const fallback = `${response.status} ${response.statusText}`.trim();
  try {
    const data = await response.json();
    if (typeof data.error === "string") return data.error;
    if (typeof data.detail === "string") return data.detail;
    if (Array.isArray(data.detail)) {
      return data.detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
    }
    return fallback;
  } catch {
    return fallback;
  }
}

export async function readLog(nodeId, offset) {
  const response = await fetch(`/api/nodes/${encodeURIComponent(nodeId)}/log?offset=${offset}`);
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return new Uint8Array(await response.arrayBuffer());
}
