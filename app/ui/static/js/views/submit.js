// #/submit: paste a job spec or start from an example; the server's validation errors are shown next
// to the field they name, in an outline of the submitted spec.
import { ApiError, fieldPath, randomKey, request } from "../api.js";
import { errorNotice, h, replace } from "../dom.js";
import { loadMeta } from "../meta.js";

const DEFAULT_EXAMPLE = "smoke";

export async function renderSubmit(view, { signal }) {
  const meta = await loadMeta();
  const names = Object.keys(meta.examples);
  const first = names.includes(DEFAULT_EXAMPLE) ? DEFAULT_EXAMPLE : names[0];
  // One Idempotency-Key per spec text: pressing Submit again after a lost answer cannot make two jobs.
  let idempotencyKey = randomKey();
  const text = h("textarea", { class: "spec", id: "spec-text", spellcheck: "false", name: "spec" });
  text.value = first ? pretty(meta.examples[first]) : "";
  const picker = h("select", { id: "example-picker" },
    names.map((name) => h("option", { value: name, selected: name === first }, `${name}.json`)));
  const loadExample = () => {
    text.value = pretty(meta.examples[picker.value]);
    idempotencyKey = randomKey();
    replace(feedback);
  };
  picker.addEventListener("change", loadExample);
  // Choosing the example already shown fires no change event: this button loads it again.
  const load = h("button", { type: "button", id: "load-example", onclick: loadExample }, "Load");
  const button = h("button", { class: "primary", type: "submit", id: "submit-job" }, "Submit");
  const feedback = h("div", { id: "submit-feedback" });
  const form = h("form", { id: "submit-form" },
    h("div", { class: "toolbar" }, h("label", {}, "start from an example", picker), load, button),
    h("div", { class: "submit-layout" },
      h("div", {}, text),
      h("div", {}, feedback)));
  replace(view, h("h1", {}, "Submit a job"),
    h("p", { class: "muted" }, "The same JSON as ", h("code", {}, "netgrow grow SPEC.json"),
      "; every field and its valid range is in the API's schema at ", h("a", { href: "/docs" }, "/docs"), "."),
    form);

  text.addEventListener("input", () => { idempotencyKey = randomKey(); });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let spec;
    try {
      spec = JSON.parse(text.value);
    } catch (error) {
      replace(feedback, errorNotice({ message: `The spec is not valid JSON: ${error.message}` }));
      return;
    }
    button.disabled = true;
    try {
      const job = await request("/v1/jobs", {
        method: "POST", body: spec, signal, headers: { "Idempotency-Key": idempotencyKey },
      });
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.fieldErrors.length) {
        showFieldErrors(feedback, spec, error.fieldErrors);
      } else {
        replace(feedback, errorNotice(error));
      }
    } finally {
      button.disabled = false;
    }
  });
}

function pretty(spec) {
  return JSON.stringify(spec, null, 2);
}

// The submitted spec as an outline, one line per field, with each error under the line of the field it
// names (or of the nearest enclosing field, when the named one is missing).
function showFieldErrors(feedback, spec, errors) {
  const lines = new Map();
  const outline = h("div", { class: "outline card", id: "spec-outline" });
  drawOutline(outline, lines, spec, [], null, 0);
  const elsewhere = [];
  for (const error of errors) {
    const [where, ...parts] = error.loc ?? [];
    if (where !== "body") {
      elsewhere.push(`${fieldPath(error.loc)}: ${error.msg}`);
      continue;
    }
    let anchor = null;
    for (let n = parts.length; n >= 0 && !anchor; n -= 1) anchor = lines.get(JSON.stringify(parts.slice(0, n)));
    anchor.classList.add("invalid");
    const message = h("div", { class: "field-error", role: "alert", dataset: { field: fieldPath(error.loc) } },
      `${fieldPath(error.loc)}: ${error.msg}`);
    let after = anchor;
    while (after.nextElementSibling?.classList.contains("field-error")) after = after.nextElementSibling;
    after.after(message);
  }
  replace(feedback,
    h("div", { class: "notice error", role: "alert" },
      `The server refused the spec (${errors.length} ${errors.length === 1 ? "problem" : "problems"}); `
      + "each is shown under the field it names."),
    elsewhere.map((text) => h("p", { class: "error" }, text)),
    outline);
}

function drawOutline(outline, lines, value, path, key, depth) {
  const indent = "  ".repeat(depth);
  const label = key === null ? "" : typeof key === "number" ? `[${key}] ` : `${JSON.stringify(key)}: `;
  const isArray = Array.isArray(value);
  const isObject = value !== null && typeof value === "object";
  const line = h("div", { class: "line", dataset: { path: fieldPath(["body", ...path]) } },
    indent + label + (isObject ? (isArray ? "[" : "{") : JSON.stringify(value)));
  outline.append(line);
  lines.set(JSON.stringify(path), line);
  if (!isObject) return;
  const entries = isArray ? value.map((item, index) => [index, item]) : Object.entries(value);
  for (const [childKey, child] of entries) drawOutline(outline, lines, child, [...path, childKey], childKey, depth + 1);
  outline.append(h("div", { class: "line" }, indent + (isArray ? "]" : "}")));
}
