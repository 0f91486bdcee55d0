// #/compare?ids=a,b&measure=params: pick finished jobs, see Tables 4 and 5 and the comparison chart.
import { fetchBlob, query, request } from "../api.js";
import { describeData, errorNotice, formatCount, formatPercent, formatTime, h, replace, shortId } from "../dom.js";

const PICKER_LIMIT = 100; // the server caps a page at its own maximum; the page says what it used
const ROW_FORMATS = {
  Params: formatCount,
  MACs: formatCount,
  "Test accuracy": (value) => formatPercent(value),
  "Group sparsity": (value) => formatPercent(value),
  "Wall time (s)": (value) => value.toFixed(1),
  Epochs: String,
};

export async function renderCompare(view, { signal, params }) {
  const chosen = (params.get("ids") ?? "").split(",").filter(Boolean);
  const measure = params.get("measure") === "macs" ? "macs" : "params";
  const picker = h("div", { class: "picker", id: "compare-picker" }, h("span", { class: "muted" }, "loading…"));
  const measureSelect = h("select", { id: "compare-measure" },
    h("option", { value: "params", selected: measure === "params" }, "parameters"),
    h("option", { value: "macs", selected: measure === "macs" }, "MACs"));
  const result = h("div", { id: "compare-result" });
  const form = h("form", { class: "card", id: "compare-form" },
    h("h2", {}, "Finished jobs"), picker,
    h("div", { class: "toolbar" },
      h("label", {}, "chart against", measureSelect),
      h("button", { class: "primary", type: "submit", id: "compare-submit" }, "Compare")));
  // Jobs in the order they were ticked: the first is Table 5's baseline.
  const order = [...chosen];
  picker.addEventListener("change", (event) => {
    const id = event.target.value;
    const at = order.indexOf(id);
    if (at >= 0) order.splice(at, 1);
    if (event.target.checked) order.push(id);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/compare${query({ ids: order.join(","), measure: measureSelect.value })}`;
  });
  replace(view, h("h1", {}, "Compare jobs"),
    h("p", { class: "muted" }, "Tables 4 and 5 of the DessiLBI paper over finished jobs, in the order you tick "
      + "them; the first is the baseline of the relative parameter counts."),
    h("div", { class: "compare-layout" }, form, result));

  request(`/v1/jobs${query({ status: "succeeded", limit: PICKER_LIMIT })}`, { signal }).then((page) => {
    replace(picker, page.items.length ? page.items.map((job) => h("label", {},
      h("input", { type: "checkbox", value: job.id, checked: chosen.includes(job.id), dataset: { method: job.method } }),
      h("span", {}, h("strong", {}, job.method), ` · ${describeData(job.spec)} · `,
        h("span", { class: "mono" }, shortId(job.id)),
        h("span", { class: "muted" }, ` · ${formatCount(job.metrics.params)} params · `
          + `${formatPercent(job.metrics.test_accuracy)} · ${formatTime(job.created_at)}`))))
      : h("span", { class: "muted" }, "No finished job yet."));
  }).catch((error) => !signal.aborted && replace(picker, errorNotice(error)));

  if (!chosen.length) {
    replace(result, h("p", { class: "muted card" }, "Pick one or more finished jobs and press Compare."));
    return;
  }
  const ids = chosen.join(",");
  const chart = h("img", { id: "compare-chart", alt: "test accuracy against " + measure });
  replace(result, h("span", { class: "muted" }, "loading…"));
  try {
    const [tables, { blob }] = await Promise.all([
      request(`/v1/compare${query({ ids })}`, { signal }),
      fetchBlob(`/v1/compare/plot.svg${query({ ids, measure })}`, { signal }),
    ]);
    const url = URL.createObjectURL(blob);
    signal.addEventListener("abort", () => URL.revokeObjectURL(url));
    chart.src = url;
    await chart.decode().catch(() => {});
    replace(result,
      h("figure", { dataset: { state: "ready" } }, chart,
        h("figcaption", {}, h("span", {}, "Test accuracy against " + (measure === "macs" ? "MACs" : "parameters")))),
      h("div", { class: "card" }, h("h2", {}, "Table 4 · final widths"), table4(tables.table4)),
      h("div", { class: "card" }, h("h2", {}, "Table 5 · parameters and accuracy"), table5(tables.table5)));
    view.dataset.loaded = "compare";
  } catch (error) {
    if (!signal.aborted) replace(result, errorNotice(error));
  }
}

function table4(table) {
  return h("table", { id: "table4" },
    h("thead", {}, h("tr", {}, h("th", {}, "Layer"), table.columns.map((column) => h("th", { class: "num" }, column)))),
    h("tbody", {}, table.rows.map((row) => h("tr", {},
      h("th", {}, row.name),
      row.values.map((value) => h("td", { class: "num" },
        value === null ? "–" : (ROW_FORMATS[row.name] ?? String)(value)))))));
}

function table5(rows) {
  return h("table", { id: "table5" },
    h("thead", {}, h("tr", {}, ["Run", "Method"].map((name) => h("th", {}, name)),
      ["Params", "Test accuracy", "Relative params"].map((name) => h("th", { class: "num" }, name)))),
    h("tbody", {}, rows.map((row) => h("tr", {},
      h("td", {}, row.run), h("td", {}, row.method),
      h("td", { class: "num" }, formatCount(row.params)),
      h("td", { class: "num" }, formatPercent(row.test_accuracy)),
      h("td", { class: "num" }, row.relative_params === null ? "–" : `${row.relative_params.toFixed(2)}×`)))));
}
