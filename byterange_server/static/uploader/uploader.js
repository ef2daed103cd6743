// The uploader page: many files, each as parallel segments, with pause/resume, resume after a
// reload, progress, and each resource's live extent map. Everything it shows comes from the
// server's state endpoints (HEAD, the committed-ranges document) and from its own requests.

import {fetchState} from "./byterange.js";
import {forgetUpload} from "./byterange.js";
import {MiB} from "./byterange.js";
import {normalize} from "./byterange.js";
import {rememberedUploads} from "./byterange.js";
import {storageKey} from "./byterange.js";
import {upload} from "./byterange.js";
import {formatBytes} from "./extentmap.js";
import {renderExtentMap} from "./extentmap.js";

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const base = meta("byterange-uploader");
const POLL_MS = 1000;

const urlInput = $("#url");
urlInput.value = params.get("url") || new URL(meta("byterange-endpoint") || "/files", location.href).href;
if (meta("byterange-auth") === "off") $("#token-field").hidden = true;
if (params.get("parallel")) $("#parallel").value = params.get("parallel");
if (params.get("segment")) $("#segment").value = params.get("segment");

const entries = [];

function headers() {
  const token = $("#token").value.trim();
  return token ? {Authorization: `Bearer ${token}`} : {};
}

function options() {
  return {
    parallel: Math.max(1, Number($("#parallel").value) || 4),
    segmentSize: Math.max(1, Number($("#segment").value) || 8) * MiB,
    headers: headers(),
  };
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function statusHref(resourceUrl) {
  return `${base}/status?url=${encodeURIComponent(resourceUrl)}`;
}

// -- one file ------------------------------------------------------------------------------------

class Entry {
  constructor(file) {
    this.file = file;
    this.endpoint = urlInput.value.trim();
    this.key = storageKey(this.endpoint, file);
    this.url = null;
    this.progress = null;
    this.server = null;
    this.controller = null;
    this.node = element("li", "file");
    this.node.dataset.name = file.name;
    const top = element("div", "row");
    top.append(element("span", "name", file.name), element("span", "size", formatBytes(file.size)));
    this.status = element("span", "status", "waiting");
    this.button = element("button", "toggle", "Pause");
    this.button.type = "button";
    this.button.addEventListener("click", () => (this.controller ? this.pause() : this.start()));
    this.link = element("a", "status-link", "status page");
    this.link.hidden = true;
    top.append(this.status, this.link, this.button);
    this.bar = element("progress");
    this.bar.max = Math.max(1, file.size);
    this.bar.value = 0;
    this.map = element("div", "extent-map");
    this.node.append(top, this.bar, this.map);
    renderExtentMap(this.map, {length: file.size});
  }

  setState(state, text) {
    this.node.dataset.state = state;
    this.status.textContent = text;
    this.button.textContent = state === "uploading" || state === "retrying" ? "Pause" : "Resume";
    this.button.hidden = state === "done";
    overall();
  }

  get loaded() {
    if (this.node.dataset.state === "done") return this.file.size;
    return this.progress ? this.progress.loaded : 0;
  }

  render() {
    const local = this.progress;
    const committed = normalize([...(this.server?.committed || []), ...(local?.committed || [])]);
    const sending = (local?.inFlight || []).map(({start, sent}) => [start, start + sent]);
    const inFlight = normalize([...(this.server?.inFlight || []), ...(local?.inFlight || []).map((r) => [r.start, r.stop])]);
    renderExtentMap(this.map, {
      length: this.file.size, committed, inFlight: this.node.dataset.state === "done" ? [] : inFlight,
      sending, complete: this.node.dataset.state === "done",
    });
    this.bar.value = this.loaded;
    overall();
  }

  async poll(signal) {
    // The server's own view while this page uploads: what it committed, what writers hold.
    while (!signal.aborted) {
      if (this.url) {
        try {
          this.server = await fetchState(this.url, {headers: headers(), signal, inFlight: true});
          this.render();
        } catch (error) {
          // the upload itself reports failures
        }
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  start() {
    const controller = new AbortController();
    this.controller = controller;
    this.setState("uploading", "uploading");
    const opts = {
      ...options(),
      signal: controller.signal,
      onProgress: (progress) => {
        if (!this.url) this.showUrl(progress.url);
        this.progress = progress;
        // Back to "uploading" once bytes move again, not at any progress report.
        if (this.node.dataset.state === "retrying" && progress.sentThisRun > this.sentAtRetry) {
          this.setState("uploading", "uploading");
        }
        if (this.node.dataset.state === "retrying") return;
        this.status.textContent = `${formatBytes(progress.loaded)} of ${formatBytes(progress.size)}, ${progress.inFlight.length} in flight`;
        scheduleRender(this);
      },
      onRetry: ({error, attempt, of, delay}) => {
        this.sentAtRetry = this.progress ? this.progress.sentThisRun : 0;
        this.setState("retrying", `retrying in ${Math.round(delay / 1000)} s (attempt ${attempt} of ${of}): ${error.message}`);
      },
    };
    const polling = new AbortController();
    this.poll(polling.signal);
    upload(this.file, this.endpoint, opts).then(
      (result) => {
        this.showUrl(result.url);
        this.server = {committed: [[0, this.file.size]], inFlight: []};
        this.progress = {...(this.progress || {}), loaded: this.file.size, committed: [[0, this.file.size]], inFlight: []};
        this.controller = null;
        this.setState("done", result.resumed ? "done (resumed)" : "done");
        this.render();
      },
      (error) => {
        this.controller = null;
        if (error.name === "AbortError") this.setState("paused", "paused");
        else this.setState("failed", `failed: ${error.message}`);
        // After a pause the server committed what it received: show its state.
        if (this.url) fetchState(this.url, {headers: headers(), inFlight: true}).then((state) => {
          this.server = state;
          this.progress = null;
          this.render();
        }, () => {});
      },
    ).finally(() => polling.abort());
  }

  pause() {
    if (this.controller) this.controller.abort();
  }

  showUrl(url) {
    this.url = url;
    this.node.dataset.url = url;
    this.link.href = statusHref(url);
    this.link.target = "_blank";
    this.link.rel = "noopener";
    this.link.hidden = false;
  }
}

const pending = new Set();
function scheduleRender(entry) {
  if (!pending.size) requestAnimationFrame(() => {
    for (const item of pending) item.render();
    pending.clear();
  });
  pending.add(entry);
}

function overall() {
  const size = entries.reduce((sum, e) => sum + e.file.size, 0);
  const loaded = entries.reduce((sum, e) => sum + e.loaded, 0);
  const done = entries.filter((e) => e.node.dataset.state === "done").length;
  const bar = $("#overall-progress");
  bar.max = Math.max(1, size);
  bar.value = loaded;
  $("#overall-text").textContent = entries.length
    ? `${done} of ${entries.length} files, ${formatBytes(loaded)} of ${formatBytes(size)}`
    : "no files yet";
  $("#overall").dataset.done = String(done);
  $("#overall").dataset.files = String(entries.length);
}

function add(files) {
  for (const file of files) {
    const entry = new Entry(file);
    document.querySelector(`#remembered-list li[data-key="${CSS.escape(entry.key)}"]`)?.remove();
    $("#remembered").hidden = !$("#remembered-list").children.length;
    entries.push(entry);
    $("#list").append(entry.node);
    entry.start();
  }
}

// -- uploads remembered from earlier visits -----------------------------------------------------

async function showRemembered() {
  const endpoint = new URL(urlInput.value, location.href);
  const here = endpoint.origin + endpoint.pathname;
  const list = $("#remembered-list");
  for (const record of rememberedUploads().filter((r) => r.endpoint === here)) {
    const item = element("li", "file remembered");
    item.dataset.key = record.key;
    item.dataset.url = record.url;
    const row = element("div", "row");
    const forget = element("button", "forget", "Forget");
    forget.type = "button";
    forget.addEventListener("click", () => {
      forgetUpload(record.key);
      item.remove();
      $("#remembered").hidden = !list.children.length;
    });
    const link = element("a", "status-link", "status page");
    link.href = statusHref(record.url);
    row.append(element("span", "name", record.name), element("span", "size", formatBytes(record.size)),
      element("span", "status", "choose this file again to resume"), link, forget);
    const map = element("div", "extent-map");
    item.append(row, map);
    renderExtentMap(map, {length: record.size});
    list.append(item);
    $("#remembered").hidden = false;
    try {
      const state = await fetchState(record.url, {headers: headers(), inFlight: true});
      renderExtentMap(map, state);
      item.dataset.loaded = "true";
    } catch (error) {
      if (error.status === 404 || error.status === 410) {
        forgetUpload(record.key); // expired or deleted: nothing to resume
        item.remove();
      } else {
        item.querySelector(".status").textContent = `cannot read its state: ${error.message}`;
        item.dataset.loaded = "error";
      }
    }
  }
  $("#remembered").hidden = !list.children.length;
  document.body.dataset.ready = "true";
}

// -- wiring -------------------------------------------------------------------------------------

const drop = $("#drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  add(event.dataTransfer.files);
});
$("#files").addEventListener("change", (event) => {
  add(event.target.files);
  event.target.value = "";
});
$("#pause-all").addEventListener("click", () => entries.forEach((e) => e.pause()));
$("#resume-all").addEventListener("click", () => entries.forEach((e) => {
  if (!e.controller && e.node.dataset.state !== "done") e.start();
}));
overall();
showRemembered();
