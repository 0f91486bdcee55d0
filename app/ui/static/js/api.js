// The one place that talks to the netgrow API: the API key, JSON requests, images and the event stream.
//
// The key lives in sessionStorage (this tab only, gone when it closes) and goes out as an
// `Authorization: Bearer` header on every call, never in a URL: URLs end up in server and proxy logs,
// browser history and Referer headers. EventSource cannot send headers, so job events are read with
// fetch() and a streaming response body instead (see docs/dashboard.md).

const KEY_STORAGE = "netgrow.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetApiKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(describeDetail(status, detail));
    this.status = status;
    this.detail = detail;
  }

  // FastAPI's 422 bodies: [{loc: ["body", "model", "layers", 2], msg, type}, ...]
  get fieldErrors() {
    return Array.isArray(this.detail) ? this.detail : [];
  }
}

function describeDetail(status, detail) {
  if (Array.isArray(detail)) {
    return detail.map((item) => `${fieldPath(item.loc)}: ${item.msg}`).join("; ");
  }
  return `${status}: ${detail}`;
}

// ["body", "model", "layers", 2] -> "model.layers[2]"; a query or header keeps its name.
export function fieldPath(loc = []) {
  const [where, ...parts] = loc;
  let path = "";
  for (const part of parts) {
    path += typeof part === "number" ? `[${part}]` : path ? `.${part}` : String(part);
  }
  return path || String(where ?? "body");
}

function headers(extra = {}, key = apiKey()) {
  return key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
}

// `candidate`: a key being tried (the sign-in form), whose refusal is the caller's to report.
async function check(response, { candidate = false } = {}) {
  if (response.ok) return response;
  let detail = response.statusText;
  try {
    detail = (await response.json()).detail ?? detail;
  } catch {
    // not JSON: keep the status text
  }
  if (response.status === 401 && !candidate) {
    window.dispatchEvent(new CustomEvent("netgrow:unauthorized", { detail }));
  }
  throw new ApiError(response.status, detail);
}

export async function request(path, { method = "GET", body, headers: extra, signal, key } = {}) {
  const init = { method, headers: headers(extra, key ?? apiKey()), signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await check(await fetch(path, init), { candidate: key !== undefined });
  return response.status === 204 ? null : response.json();
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// A binary answer (a plot, the weights) as a Blob, with the response for its headers.
export async function fetchBlob(path, { signal } = {}) {
  const response = await check(await fetch(path, { headers: headers(), signal, cache: "no-store" }));
  return { blob: await response.blob(), response };
}

// Save a Blob under a file name (the weights download: the request needs the Authorization header,
// so a plain link to the URL cannot do it).
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// A random Idempotency-Key; crypto.randomUUID exists only in secure contexts (https, localhost).
export function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// --- Server-Sent Events over fetch ----------------------------------------------------------------

// Parse a text/event-stream body (the HTML standard's rules) into {event, data, id} messages.
async function* readEventStream(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const abort = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", abort);
  let buffer = "";
  let event = "";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n"), id };
          event = "";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let field = colon < 0 ? "" : line.slice(colon + 1);
          if (field.startsWith(" ")) field = field.slice(1);
          if (name === "event") event = field;
          else if (name === "data") data.push(field);
          else if (name === "id") id = field;
        }
      }
    }
  } finally {
    signal?.removeEventListener("abort", abort);
    reader.releaseLock();
  }
}

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

// Follow a job's event stream until the server ends it after the terminal state, calling
// onMessage({event, data: parsed JSON, id}) for each event. A dropped connection is resumed with
// Last-Event-ID, as EventSource would; an HTTP error (401, 404) ends the follow with an ApiError.
export async function followJobEvents(jobId, onMessage, { signal, retries = 8 } = {}) {
  let lastEventId = null;
  let failures = 0;
  while (!signal?.aborted) {
    const extra = { Accept: "text/event-stream" };
    if (lastEventId !== null) extra["Last-Event-ID"] = lastEventId;
    let finished = false;
    try {
      const response = await check(await fetch(`/v1/jobs/${jobId}/events`, {
        headers: headers(extra), signal, cache: "no-store",
      }));
      for await (const message of readEventStream(response.body, signal)) {
        failures = 0;
        if (message.id !== null) lastEventId = message.id;
        const data = JSON.parse(message.data);
        onMessage({ event: message.event, data, id: message.id });
        if (message.event === "state" && TERMINAL.has(data.status)) finished = true;
      }
      // The server ends the stream once the job has finished and nothing is left to send.
      if (finished) return;
    } catch (error) {
      if (error instanceof ApiError || signal?.aborted) throw error;
      failures += 1;
      if (failures > retries) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** failures, 8000)));
  }
}
