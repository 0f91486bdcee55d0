// What the server offers: job statuses, methods and example specs (GET /ui/meta.json, no key needed:
// it holds nothing of any user). Loaded once per page.
let cached = null;

export function loadMeta() {
  cached ??= fetch("/ui/meta.json", { cache: "no-store" }).then((response) => {
    if (!response.ok) throw new Error(`cannot load /ui/meta.json (${response.status})`);
    return response.json();
  });
  return cached;
}
