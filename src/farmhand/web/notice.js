// Messages to the user: errors (kept until dismissed, announced at once), short
// confirmations, and the token's state with a form to give one.

import { setToken, token } from "./api.js";

const $ = (id) => document.getElementById(id);
let toastTimer = 0;

export function initNotices() {
  $("notice-close").addEventListener("click", hideError);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("token-input").value);
    $("token-input").value = "";
    hideError();
    renderTokenState();
    showToast("Token saved for this tab. Try the change again.");
  });
  renderTokenState();
}

export function showError(text, { tokenProblem = false } = {}) {
  const notice = $("notice");
  notice.dataset.kind = tokenProblem ? "token" : "error";
  $("notice-text").textContent = text;
  $("token-form").hidden = !tokenProblem;
  notice.hidden = false;
  if (tokenProblem) $("token-input").focus();
}

export function hideError() {
  $("notice").hidden = true;
}

export function showToast(text) {
  const toast = $("toast");
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 5000);
}

// Report a failed change. A token problem says what to do about it, with the API's words.
export function reportFailure(what, error) {
  if (error.isTokenProblem) {
    const missing = error.status === 401;
    const advice = missing
      ? "This page has no token, so it can look but not change anything."
      : "The farm refused the token this page holds.";
    showError(`${what} was refused: ${error.message}. ${advice} Open the dashboard link that ` +
      "“farmhand up” printed, or paste the token below.", { tokenProblem: true });
    renderTokenState(error.status);
  } else {
    showError(`${what} failed: ${error.message}`);
  }
}

export function renderTokenState(refusedStatus = 0) {
  const el = $("token-state");
  el.replaceChildren();
  const label = document.createElement("span");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "quiet";
  if (refusedStatus === 403) {
    el.dataset.state = "refused";
    label.textContent = "✕ token refused";
    button.textContent = "Enter token";
  } else if (token()) {
    el.dataset.state = "set";
    label.textContent = "✓ token set";
    button.textContent = "Change token";
  } else {
    el.dataset.state = "missing";
    label.textContent = "no token: read-only";
    button.textContent = "Enter token";
  }
  button.setAttribute("aria-label", `${button.textContent} (the API token from .farmhand/token)`);
  button.addEventListener("click", () => {
    showError("Paste the farm's token (the file .farmhand/token beside the farm file) to allow changes from this tab.",
      { tokenProblem: true });
  });
  el.append(label, button);
}
