// Loads before the dashboard's modules and only watches them. If one of them cannot be
// fetched, the browser runs none of them and the page would say "connecting…" for ever; a
// request cut by a network change (Chromium cancels requests in flight when the machine's
// addresses change) is enough. So a failed module graph reloads the page, after a second.
// The token survives: it lives in sessionStorage, not in the address.
document.querySelector('script[type="module"][src="/web/app.js"]')
  ?.addEventListener("error", () => setTimeout(() => location.reload(), 1000));
