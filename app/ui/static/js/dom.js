// Small DOM and formatting helpers. Text always goes in as text (textContent), never as HTML.

// h("a", {href: "#/jobs", class: "x"}, "text", child, ...) -> element
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function badge(status) {
  return h("span", { class: `badge ${status}`, dataset: { status } }, status);
}

// 1234567 -> "1.23 M", 45600 -> "45.6 K" (the same units as the comparison tables)
export function formatCount(n) {
  if (n === null || n === undefined) return "–";
  const scales = [[1e9, "G", 2], [1e6, "M", 2], [1e3, "K", 1]];
  for (const [scale, suffix, digits] of scales) {
    if (Math.abs(n) >= scale * 0.9995) return `${(n / scale).toFixed(digits)} ${suffix}`;
  }
  return String(n);
}

export function formatPercent(fraction, digits = 2) {
  return fraction === null || fraction === undefined ? "–" : `${(100 * fraction).toFixed(digits)}%`;
}

export function formatNumber(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
}

export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

export function formatTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

export function describeData(spec) {
  const data = spec?.data ?? {};
  return data.name ?? "–";
}

export function errorNotice(error) {
  return h("div", { class: "notice error", role: "alert" }, error?.message ?? String(error));
}
