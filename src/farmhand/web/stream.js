// Server-sent event streams that do not hang on a stalled start.
//
// EventSource retries by itself only after an error. A request whose answer never starts (a
// connection that stalled on the way, a proxy holding it) raises none, and the page would say
// "connecting…" for ever. So a stream that is not open within OPEN_WITHIN_MS is closed and
// opened again, with the same listeners; one that opened and then failed is left to
// EventSource's own retry.

const OPEN_WITHIN_MS = 5000;

// `url`: a string, or a function giving the address for each attempt (to resume after the
// last event seen). `listeners`: event name -> handler. `onState(open)`: true once open,
// false on every error or restart.
export function openStream(url, listeners, onState) {
  const address = typeof url === "function" ? url() : url;
  const source = new EventSource(address);
  for (const [name, handler] of Object.entries(listeners)) source.addEventListener(name, handler);
  const watchdog = setTimeout(() => {
    if (source.readyState === EventSource.OPEN) return;
    source.close();
    onState(false);
    openStream(url, listeners, onState);
  }, OPEN_WITHIN_MS);
  source.addEventListener("open", () => {
    clearTimeout(watchdog);
    onState(true);
  });
  source.addEventListener("error", () => onState(false));
  return source;
}
