// #/jobs?status=&method=&offset=: the caller's jobs, newest first, refreshed while any is unfinished.
import { query, request } from "../api.js";
import {
  badge, describeData, errorNotice, formatCount, formatPercent, formatTime, h, replace, shortId,
} from "../dom.js";
import { loadMeta } from "../meta.js";

const PAGE = 25;
const REFRESH_MS = 3000;

export async function renderJobs(view, { signal, params }) {
  const meta = await loadMeta();
  const filters = { status: params.get("status") ?? "", method: params.get("method") ?? "" };
  const offset = Math.max(0, Number.parseInt(params.get("offset") ?? "0", 10) || 0);

  const select = (name, values) => h("select", {
    name, id: `filter-${name}`, onchange: (event) => navigate({ ...filters, [name]: event.target.value }, 0),
  }, h("option", { value: "" }, "any"), values.map((value) => h("option", { value, selected: value === filters[name] }, value)));

  const table = h("table", { id: "jobs-table" });
  const footer = h("div", { class: "toolbar" });
  const notice = h("div");
  replace(view,
    h("h1", {}, "Jobs"),
    h("div", { class: "toolbar" },
      h("label", {}, "status", select("status", meta.statuses)),
      h("label", {}, "method", select("method", meta.methods)),
      h("a", { href: "#/submit" }, h("button", { class: "primary", type: "button" }, "Submit a job")),
      h("a", { href: "#/compare" }, h("button", { type: "button" }, "Compare jobs"))),
    notice, table, footer);

  let timer = null;
  signal.addEventListener("abort", () => clearTimeout(timer));

  async function load() {
    let page;
    try {
      page = await request(`/v1/jobs${query({ ...filters, limit: PAGE, offset })}`, { signal });
    } catch (error) {
      if (!signal.aborted) replace(notice, errorNotice(error));
      return;
    }
    replace(notice);
    drawTable(table, page.items);
    drawFooter(footer, page);
    view.dataset.loaded = "jobs";
    if (page.items.some((job) => job.status === "queued" || job.status === "running")) {
      timer = setTimeout(load, REFRESH_MS);
    }
  }

  function navigate(next, nextOffset) {
    location.hash = `#/jobs${query({ ...next, offset: nextOffset || "" })}`;
  }

  function drawFooter(element, page) {
    const last = Math.min(page.offset + page.items.length, page.total);
    replace(element,
      h("span", { class: "muted" }, page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no jobs yet"),
      page.offset > 0 && h("button", { type: "button", onclick: () => navigate(filters, Math.max(0, page.offset - PAGE)) }, "Newer"),
      last < page.total && h("button", { type: "button", onclick: () => navigate(filters, page.offset + PAGE) }, "Older"));
  }

  load();
}

function drawTable(table, jobs) {
  replace(table,
    h("thead", {}, h("tr", {},
      h("th", {}, "job"), h("th", {}, "status"), h("th", {}, "method"), h("th", {}, "dataset"),
      h("th", {}, "progress"), h("th", { class: "num" }, "params"), h("th", { class: "num" }, "test accuracy"),
      h("th", {}, "created"))),
    h("tbody", {}, jobs.map((job) => h("tr", { dataset: { jobId: job.id, status: job.status } },
      h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "mono" }, shortId(job.id))),
      h("td", {}, badge(job.status)),
      h("td", {}, job.method),
      h("td", {}, describeData(job.spec)),
      h("td", {}, h("progress", { max: job.progress.total || 1, value: job.progress.epoch }), " ",
        h("span", { class: "muted" }, `${job.progress.epoch}/${job.progress.total}`)),
      h("td", { class: "num" }, formatCount(job.metrics.params)),
      h("td", { class: "num" }, formatPercent(job.metrics.test_accuracy)),
      h("td", {}, formatTime(job.created_at))))));
}
