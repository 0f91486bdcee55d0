// #/jobs/<id>: one job, live. The event stream moves the progress bar, lists growth events as they
// happen and redraws the three plots (rendered by the server from the stored history) as epochs arrive.
import { ApiError, fetchBlob, followJobEvents, request, saveBlob } from "../api.js";
import {
  badge, describeData, errorNotice, formatCount, formatNumber, formatPercent, formatSeconds, formatTime, h,
  replace, shortId,
} from "../dom.js";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const PLOTS = [
  ["timeline", "Width of each unit"],
  ["heatmap", "Selected filters / width (τ marked)"],
  ["curves", "Loss, accuracy, parameters and MACs"],
];

// One server-rendered plot. It knows how many epochs its current image shows (the X-Plot-Epochs
// header), so epochs replayed by the event stream that the image already has cost no request; while
// one request is out, newer epochs only raise the count wanted, and one more request follows.
class LivePlot {
  constructor(jobId, name, caption, signal) {
    this.path = `/v1/jobs/${jobId}/plots/${name}`;
    this.jobId = jobId;
    this.name = name;
    this.signal = signal;
    this.busy = false;
    this.forced = false;
    this.drawn = -1;
    this.wanted = 0;
    this.failures = 0; // failed requests in a row
    this.url = null;
    this.loaded = null;
    this.firstLoad = new Promise((resolve) => { this.loaded = resolve; });
    this.image = h("img", { alt: caption, id: `plot-${name}`, dataset: { epochs: "" } });
    this.element = h("figure", { dataset: { plot: name, state: "loading" } }, this.image,
      h("figcaption", {}, h("span", {}, caption),
        h("span", {},
          h("button", { type: "button", class: "link", onclick: () => this.download("svg") }, "SVG"), " ",
          h("button", { type: "button", class: "link", onclick: () => this.download("png") }, "PNG"))));
    signal.addEventListener("abort", () => this.url && URL.revokeObjectURL(this.url));
  }

  // Redraw if the image shows fewer than `epochs` epochs.
  want(epochs) {
    this.wanted = Math.max(this.wanted, epochs);
    if (!this.busy && this.drawn < this.wanted) this.refresh();
  }

  async refresh() {
    if (this.busy) {
      this.forced = true;
      return;
    }
    this.busy = true;
    const before = this.drawn;
    try {
      const { blob, response } = await fetchBlob(`${this.path}.svg`, { signal: this.signal });
      const url = URL.createObjectURL(blob);
      this.image.src = url;
      await this.image.decode().catch(() => {});
      if (this.url) URL.revokeObjectURL(this.url);
      this.url = url;
      this.drawn = Number.parseInt(response.headers.get("X-Plot-Epochs") ?? "0", 10);
      this.image.dataset.epochs = String(this.drawn);
      this.element.dataset.state = "ready";
      this.failures = 0;
    } catch (error) {
      if (!this.signal.aborted) this.element.dataset.state = `error: ${error.message}`;
      // A refusal (404, 401) stays one; a busy server (503) or a dropped connection is worth a retry.
      const transient = !(error instanceof ApiError) || error.status >= 500;
      this.failures = transient ? this.failures + 1 : 0;
    } finally {
      this.busy = false;
      this.loaded();
    }
    if (this.signal.aborted) return;
    if (this.failures && this.failures <= 5) {
      setTimeout(() => !this.signal.aborted && this.refresh(), 500 * 2 ** this.failures);
      return;
    }
    // Once more if asked while busy, or if newer epochs arrived and this request made progress
    // (a history rewound by a retry can hold fewer epochs than events announced: no busy loop then).
    if (this.forced || (this.drawn < this.wanted && this.drawn > before)) {
      this.forced = false;
      this.refresh();
    }
  }

  async download(format) {
    const { blob } = await fetchBlob(`${this.path}.${format}`, { signal: this.signal });
    saveBlob(blob, `${shortId(this.jobId)}-${this.name}.${format}`);
  }
}

export async function renderJob(view, jobId, { signal }) {
  const started = performance.now();
  const notice = h("div", { id: "job-notice" });
  // The plots are asked for together with the job: the server draws them while the page waits for it.
  const plots = PLOTS.map(([name, caption]) => new LivePlot(encodeURIComponent(jobId), name, caption, signal));
  plots.forEach((plot) => plot.refresh());
  let job;
  try {
    job = await request(`/v1/jobs/${encodeURIComponent(jobId)}`, { signal });
  } catch (error) {
    if (signal.aborted) return;
    const text = error instanceof ApiError && error.status === 404
      ? `No job ${jobId} among your jobs.` : error.message;
    replace(view, h("h1", {}, "Job"), errorNotice({ message: text }), h("a", { href: "#/jobs" }, "All jobs"));
    return;
  }

  const title = h("h1", { id: "job-title" });
  const actions = h("div", { class: "toolbar", id: "job-actions" });
  const progress = h("div", { class: "card job-progress", id: "job-progress" });
  const stats = h("div", { class: "grid card", id: "job-stats" });
  const widths = h("div", { class: "chips", id: "job-widths" });
  const events = h("ol", { class: "events", id: "job-events" });
  const spec = h("pre", { id: "job-spec" });
  replace(view, title, actions, notice, progress, stats,
    h("div", { class: "card" }, h("h2", {}, "Current widths"), widths),
    h("div", { class: "plots", id: "job-plots" }, plots.map((plot) => plot.element)),
    h("div", { class: "card" }, h("h2", {}, "Growth events"), events),
    h("details", { class: "card" }, h("summary", {}, "Spec"), spec));

  const seen = new Set();
  let latest = null; // the last epoch event
  let following = false;
  let reloadTimer = null;
  signal.addEventListener("abort", () => clearTimeout(reloadTimer));

  function draw() {
    view.dataset.status = job.status;
    replace(title, `${job.method} job `, h("span", { class: "mono" }, shortId(job.id)), badge(job.status),
      job.cancel_requested && !TERMINAL.has(job.status) && h("span", { class: "muted" }, "cancel requested"));
    replace(actions,
      !TERMINAL.has(job.status) && h("button", {
        type: "button", class: "danger", id: "cancel-job", disabled: job.cancel_requested, onclick: cancel,
      }, "Cancel"),
      (job.status === "failed" || job.status === "canceled") && h("button", {
        type: "button", id: "retry-job", onclick: retry,
      }, "Retry"),
      job.status === "succeeded" && h("button", {
        type: "button", class: "primary", id: "download-weights", onclick: downloadWeights,
      }, "Download weights (safetensors)"),
      h("a", { href: `#/compare?ids=${job.id}` }, "Compare with other jobs"));
    const epoch = latest ? latest.epoch + 1 : job.progress.epoch;
    replace(progress,
      h("progress", { max: job.progress.total || 1, value: Math.min(epoch, job.progress.total || 1) }),
      h("div", { class: "muted", id: "job-progress-text" },
        `epoch ${epoch} / ${job.progress.total}`,
        latest && ` · ${latest.phase} · loss ${formatNumber(latest.train_loss)} · validation ${formatPercent(latest.val_accuracy)}`));
    const stat = (label, value, id, kind = "") => h("div", { class: "stat" },
      h("div", { class: `value ${kind}`, id }, value), h("div", { class: "label" }, label));
    const params = latest?.params ?? job.metrics.params;
    const macs = latest?.macs ?? job.metrics.macs;
    replace(stats,
      stat("parameters", formatCount(params), "stat-params"),
      stat("MACs per image", formatCount(macs), "stat-macs"),
      stat("test accuracy", formatPercent(job.metrics.test_accuracy), "stat-accuracy"),
      stat("wall time", formatSeconds(job.metrics.wall_seconds), "stat-wall"),
      stat("dataset", describeData(job.spec), "stat-dataset"),
      stat("attempts", `${job.attempts} / ${job.max_attempts}`, "stat-attempts"),
      stat("created", formatTime(job.created_at), "stat-created", "time"),
      stat("finished", formatTime(job.finished_at), "stat-finished", "time"));
    const current = latest
      ? Object.fromEntries(latest.units.map((unit) => [unit.name, unit.width + unit.grew]))
      : job.current_widths ?? {};
    replace(widths, Object.keys(current).length
      ? Object.entries(current).map(([name, width]) => h("span", { class: "chip" }, `${name} ${width}`))
      : h("span", { class: "muted" }, "no epoch recorded yet"));
    if (job.error) replace(notice, errorNotice({ message: `Error: ${job.error}` }));
    spec.textContent = JSON.stringify(job.spec, null, 2);
  }

  async function reload() {
    try {
      job = await request(`/v1/jobs/${job.id}`, { signal });
      draw();
    } catch (error) {
      if (!signal.aborted) replace(notice, errorNotice(error));
    }
  }

  async function act(path) {
    try {
      job = await request(path, { method: "POST", signal });
      replace(notice);
      draw();
      follow();
    } catch (error) {
      if (!signal.aborted) replace(notice, errorNotice(error));
    }
  }

  const cancel = () => act(`/v1/jobs/${job.id}/cancel`);
  const retry = () => act(`/v1/jobs/${job.id}/retry`);

  async function downloadWeights() {
    try {
      const { blob } = await fetchBlob(`/v1/jobs/${job.id}/artifacts/weights`, { signal });
      saveBlob(blob, `${job.id}.safetensors`);
    } catch (error) {
      if (!signal.aborted) replace(notice, errorNotice(error));
    }
  }

  function onMessage({ event, data, id }) {
    if (id !== null && seen.has(id)) return; // a resumed or restarted stream repeats nothing we showed
    if (id !== null) seen.add(id);
    if (event === "epoch") {
      latest = data;
      draw();
      plots.forEach((plot) => plot.want(data.epoch + 1));
    } else if (event === "architecture") {
      events.querySelector("li.muted")?.remove();
      events.append(h("li", {}, describeChange(data)));
      events.scrollTop = events.scrollHeight; // the list scrolls, never the page

    } else if (event === "state" && data.status !== job.status) {
      // A replay delivers past states in a burst: one reload after it is enough.
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(reload, 50);
    }
  }

  async function follow() {
    if (following) return;
    following = true;
    try {
      await followJobEvents(job.id, onMessage, { signal });
    } catch (error) {
      if (!signal.aborted) replace(notice, errorNotice(error));
    } finally {
      following = false;
    }
    if (signal.aborted) return;
    await reload();
    plots.forEach((plot) => plot.refresh());
    if (!events.children.length) events.append(h("li", { class: "muted" }, "no architecture change"));
  }

  draw();
  await Promise.all(plots.map((plot) => plot.firstLoad));
  if (signal.aborted) return;
  view.dataset.ready = "true";
  performance.mark("netgrow:job-ready", { detail: { sinceRoute: performance.now() - started } });
  // The stream opens once the plots are drawn: replaying a long history's events would otherwise
  // compete with drawing them. It replays from the first event, so nothing is missed meanwhile.
  follow();
}

function describeChange(change) {
  const units = Object.entries(change.units ?? {});
  const where = change.epoch < 0 ? "before training" : `after epoch ${change.epoch}`;
  if (change.change === "add_block") {
    return `${where}: added ${units.map(([name, [, width]]) => `${name} (${width})`).join(", ")}`;
  }
  const verb = change.change === "prune" ? "pruned" : change.change === "widen" ? "widened" : change.change;
  return `${where}: ${verb} ${units.map(([name, [from, to]]) => `${name} ${from}→${to}`).join(", ")}`;
}
