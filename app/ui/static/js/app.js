// The dashboard's entry point: asks for an API key once per browser session, then routes
// #/jobs, #/jobs/<id>, #/compare and #/submit to their views. The fragment never reaches the
// server, so job ids and filters stay out of request logs too.
import { ApiError, apiKey, forgetApiKey, request, setApiKey } from "./api.js";
import { h, replace } from "./dom.js";
import { renderCompare } from "./views/compare.js";
import { renderJob } from "./views/job.js";
import { renderJobs } from "./views/jobs.js";
import { renderSubmit } from "./views/submit.js";

const view = document.getElementById("view");
const session = document.getElementById("session");
let dispose = () => {};

function parseRoute() {
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  return { parts, params: new URLSearchParams(search) };
}

function showSession() {
  const key = apiKey();
  if (!key) {
    replace(session);
    return;
  }
  replace(session,
    h("span", { class: "mono", title: "the API key this tab uses" }, `key ${key.slice(0, 10)}…`),
    h("button", { type: "button", id: "forget-key", onclick: () => { forgetApiKey(); route(); } }, "Forget key"));
}

function showKeyForm(message) {
  const input = h("input", {
    type: "password", id: "api-key", name: "api-key", autocomplete: "off", spellcheck: "false",
    placeholder: "ng_…", required: true,
  });
  const status = h("p", { class: "error", role: "alert", id: "key-error" }, message ?? "");
  const form = h("form", { class: "key card", id: "key-form" },
    h("h1", {}, "Sign in with an API key"),
    h("p", { class: "muted" },
      "Create one on the server with ", h("code", {}, "netgrow keys create NAME"),
      ". It is kept in this browser tab only (session storage) and sent as an Authorization header."),
    h("label", { for: "api-key" }, "API key"), input,
    h("button", { class: "primary", type: "submit" }, "Use this key"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    try {
      await request("/v1/jobs?limit=1", { key });
    } catch (error) {
      status.textContent = error instanceof ApiError && error.status === 401
        ? "This key was not accepted (unknown or revoked)." : `Cannot reach the server: ${error.message}`;
      return;
    }
    setApiKey(key);
    route();
  });
  replace(view, form);
  input.focus();
}

function route() {
  dispose();
  dispose = () => {};
  showSession();
  const { parts, params } = parseRoute();
  const section = parts[0] ?? "jobs";
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!apiKey()) {
    showKeyForm();
    return;
  }
  const controller = new AbortController();
  dispose = () => controller.abort();
  const context = { signal: controller.signal, params };
  if (section === "jobs" && parts[1]) renderJob(view, parts[1], context);
  else if (section === "compare") renderCompare(view, context);
  else if (section === "submit") renderSubmit(view, context);
  else renderJobs(view, context);
}

window.addEventListener("hashchange", route);
window.addEventListener("netgrow:unauthorized", () => {
  forgetApiKey();
  dispose();
  showSession();
  showKeyForm("The server refused the key (revoked?). Enter a key again.");
});
if (!location.hash) history.replaceState(null, "", "#/jobs");
route();
