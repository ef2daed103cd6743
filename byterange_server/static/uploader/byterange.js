// byterange.js: resumable, segmented, parallel uploads to a byterange-server, from a browser.
//
//   import {upload} from "https://uploads.example/upload/byterange.js";
//   const result = await upload(file, "https://uploads.example/files", {
//     segmentSize: 8 * 1024 * 1024, parallel: 4, signal, onProgress: (p) => show(p.loaded / p.size),
//   });
//
// `url` is the collection (`…/files`) or a signed creation URL. The resource created for a file is
// remembered in localStorage under the file's name, size and lastModified, so calling upload()
// again with the same file -- after a pause (abort the signal), a network failure or a page
// reload -- sends only what the server has not committed (HEAD Committed-Ranges). Each missing
// range is cut into segments of at most `segmentSize` bytes, sent `parallel` at a time as partial
// PUTs with Content-Range (`method: "patch"`: PATCH message/byterange). A plain ES module: no build
// step, no dependency, no inline script needed.

export const MiB = 1024 * 1024;

const DEFAULTS = {
  segmentSize: 8 * MiB,
  parallel: 4,
  signal: undefined,
  onProgress: undefined,
  onRetry: undefined,
  headers: {},
  method: "put",
  retries: 8,
  storage: undefined, // default: globalThis.localStorage; null: remember nothing
  resumeUrl: undefined,
};
const RETRYABLE = new Set([0, 408, 409, 423, 425, 429, 500, 502, 503, 504]);
const GONE = new Set([404, 410]);
const KEY_PREFIX = "byterange:v1:";

export class UploadError extends Error {
  constructor(message, {status = 0, problem = null, retryAfter = null} = {}) {
    super(message);
    this.name = "UploadError";
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

function abortError() {
  return new DOMException("The upload was aborted.", "AbortError");
}

// -- ranges: half-open [start, stop) pairs, sorted and merged ------------------------------------

export function normalize(ranges) {
  const sorted = ranges.filter(([a, b]) => b > a).map(([a, b]) => [a, b]).sort((x, y) => x[0] - y[0]);
  const out = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** The gaps of [0, length) that `ranges` leave. */
export function gaps(ranges, length) {
  const out = [];
  let cursor = 0;
  for (const [a, b] of normalize(ranges)) {
    if (a > cursor) out.push([cursor, Math.min(a, length)]);
    cursor = Math.max(cursor, b);
  }
  if (cursor < length) out.push([cursor, length]);
  return out.filter(([a, b]) => b > a);
}

export function total(ranges) {
  return ranges.reduce((sum, [a, b]) => sum + (b - a), 0);
}

/** `Committed-Ranges: bytes=0-99,200-299` (or `none`) -> [[0, 100], [200, 300]]; null if absent. */
export function parseCommittedRanges(value) {
  if (value === null || value === undefined) return null;
  const text = value.trim();
  if (text === "none" || text === "bytes=") return [];
  if (!text.startsWith("bytes=")) throw new UploadError(`malformed Committed-Ranges: ${value}`);
  return normalize(text.slice(6).split(",").map((item) => {
    const match = /^\s*(\d+)-(\d+)\s*$/.exec(item);
    if (!match) throw new UploadError(`malformed Committed-Ranges: ${value}`);
    return [Number(match[1]), Number(match[2]) + 1];
  }));
}

/** Inclusive `first-last` pairs, comma-separated ("none" when empty): how pages show ranges. */
export function formatRanges(ranges) {
  return ranges.length ? ranges.map(([a, b]) => `${a}-${b - 1}`).join(",") : "none";
}

function findLink(value, rel) {
  for (const part of (value || "").split(/,(?=\s*<)/)) {
    const match = /^\s*<([^>]*)>(.*)$/.exec(part);
    if (match && new RegExp(`;\\s*rel="?[^";]*\\b${rel}\\b`).test(match[2])) return match[1];
  }
  return null;
}

// -- the state of a resource ----------------------------------------------------------------------

async function problemOf(response) {
  try {
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) return await response.json();
  } catch (error) {
    // an unreadable body explains nothing
  }
  return null;
}

async function refused(method, url, response) {
  const problem = await problemOf(response);
  const detail = problem && (problem.detail || problem.title);
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  return new UploadError(`${method} ${url.split("?")[0]}: ${response.status}${detail ? ` ${detail}` : ""}`, {
    status: response.status, problem, retryAfter,
  });
}

/**
 * The state of a resource: {url, length, offset, complete, committed, inFlight} (ranges half-open).
 * HEAD, then the committed-ranges document when the header left the list out or `inFlight` is
 * asked for (the ranges live writers hold: what the extent map draws as "in flight").
 */
export async function fetchState(url, {headers = {}, signal, inFlight = false} = {}) {
  let response;
  try {
    response = await fetch(url, {method: "HEAD", headers, signal, cache: "no-store"});
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new UploadError(`HEAD ${url.split("?")[0]}: ${error.message}`, {status: 0});
  }
  if (!response.ok) {
    // HEAD carries no problem document; a GET of the same URL is refused the same way, with one.
    let explained = response;
    try {
      const get = await fetch(url, {headers: {...headers, Accept: "application/problem+json"}, signal});
      if (get.status === response.status) explained = get;
    } catch (error) {
      if (error.name === "AbortError") throw error;
    }
    throw await refused("HEAD", url, explained);
  }
  const length = response.headers.get("Upload-Length");
  const complete = response.headers.get("Upload-Complete");
  const state = {
    url,
    length: length === null ? null : Number(length),
    offset: Number(response.headers.get("Upload-Offset") || 0),
    complete: complete === "?1",
    committed: parseCommittedRanges(response.headers.get("Committed-Ranges")),
    inFlight: [],
  };
  const link = findLink(response.headers.get("Link"), "committed-ranges");
  if ((state.committed === null || inFlight) && link) {
    const document = await fetchDocument(new URL(link, url).href, {headers, signal});
    if (state.committed === null) state.committed = document.committed;
    state.inFlight = document.inFlight;
  }
  state.committed = state.committed || [];
  return state;
}

async function fetchDocument(url, {headers, signal}) {
  let committed = [];
  let inFlight = [];
  let next = url;
  for (let page = 0; next && page < 1000; page++) {
    const response = await fetch(next, {headers, signal, cache: "no-store"});
    if (!response.ok) throw await refused("GET", next, response);
    const body = await response.json();
    committed = committed.concat(body.ranges.map(([a, b]) => [a, b + 1]));
    inFlight = inFlight.concat((body.in_flight || []).map(([a, b]) => [a, b + 1]));
    next = body.next ? new URL(body.next, next).href : null;
  }
  return {committed: normalize(committed), inFlight: normalize(inFlight)};
}

// -- remembering uploads across page loads --------------------------------------------------------

function defaultStorage() {
  try {
    return globalThis.localStorage || null;
  } catch (error) {
    return null; // storage disabled
  }
}

function endpointOf(url) {
  const parsed = new URL(url, globalThis.location ? globalThis.location.href : undefined);
  return parsed.origin + parsed.pathname; // a signed URL's query differs each time it is minted
}

/** The localStorage key of `file` uploaded to `url`: endpoint, name, size and lastModified. */
export function storageKey(url, file) {
  return KEY_PREFIX + JSON.stringify([endpointOf(url), file.name, file.size, file.lastModified]);
}

/** The uploads remembered in `storage`: [{key, endpoint, name, size, lastModified, url}]. */
export function rememberedUploads(storage = defaultStorage()) {
  const out = [];
  if (!storage) return out;
  for (let i = 0; i < storage.length; i++) {
    const key = storage.key(i);
    if (!key || !key.startsWith(KEY_PREFIX)) continue;
    try {
      const [endpoint, name, size, lastModified] = JSON.parse(key.slice(KEY_PREFIX.length));
      const record = JSON.parse(storage.getItem(key));
      out.push({key, endpoint, name, size, lastModified, url: record.url, started: record.started});
    } catch (error) {
      // another version's record: not ours to read
    }
  }
  return out.sort((a, b) => (a.started || 0) - (b.started || 0));
}

export function forgetUpload(key, storage = defaultStorage()) {
  if (storage) storage.removeItem(key);
}

// -- the upload -----------------------------------------------------------------------------------

function contentDisposition(name) {
  // RFC 8187 ext-value: attr-char leaves out ' ( ) *, which encodeURIComponent keeps.
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename*=UTF-8''${encoded}`;
}

async function create(file, url, options) {
  const headers = {...options.headers, "Upload-Length": String(file.size)};
  if (file.name) headers["Content-Disposition"] = contentDisposition(file.name);
  if (file.type) headers["Content-Type"] = file.type;
  let response;
  try {
    response = await fetch(url, {method: "POST", headers, signal: options.signal});
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new UploadError(`POST ${url.split("?")[0]}: ${error.message}`, {status: 0});
  }
  if (response.status !== 201 && response.status !== 200) throw await refused("POST", url, response);
  const location = response.headers.get("Location");
  if (!location) throw new UploadError("the server sent no Location (is it exposed to this origin by CORS?)");
  return new URL(location, url).href;
}

function send(resource, file, [start, stop], options, onSent) {
  return new Promise((resolve, reject) => {
    if (options.signal && options.signal.aborted) {
      reject(abortError());
      return;
    }
    // XMLHttpRequest, not fetch: it reports upload progress, and sends a Blob without reading it.
    const xhr = new XMLHttpRequest();
    const range = `bytes ${start}-${stop - 1}/${file.size}`;
    let body = file.slice(start, stop);
    xhr.open(options.method === "patch" ? "PATCH" : "PUT", resource);
    for (const [name, value] of Object.entries(options.headers)) xhr.setRequestHeader(name, value);
    if (options.method === "patch") {
      xhr.setRequestHeader("Content-Type", "message/byterange");
      body = new Blob([`Content-Range: ${range}\r\n\r\n`, body]);
    } else {
      xhr.setRequestHeader("Content-Range", range);
    }
    const head = body.size - (stop - start);
    const abort = () => xhr.abort();
    if (options.signal) options.signal.addEventListener("abort", abort, {once: true});
    xhr.upload.onprogress = (event) => onSent(Math.max(0, Math.min(stop - start, event.loaded - head)));
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => reject(new UploadError(`${range}: network error`, {status: 0}));
    xhr.ontimeout = () => reject(new UploadError(`${range}: timed out`, {status: 0}));
    xhr.onabort = () => reject(abortError());
    xhr.onloadend = () => {
      if (options.signal) options.signal.removeEventListener("abort", abort);
    };
    xhr.send(body);
  });
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(abortError());
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener("abort", stop);
      resolve();
    }, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(abortError());
    };
    if (signal) signal.addEventListener("abort", stop, {once: true});
  });
}

class Transfer {
  constructor(file, resource, committed, options) {
    this.file = file;
    this.resource = resource;
    this.options = options;
    this.committed = normalize(committed);
    this.active = new Map(); // segment -> bytes of it sent so far
    this.sent = 0; // bytes sent by finished requests of this run
    this.queue = [];
    for (const [a, b] of gaps(this.committed, file.size)) {
      for (let start = a; start < b; start += options.segmentSize) {
        this.queue.push([start, Math.min(b, start + options.segmentSize)]);
      }
    }
  }

  progress() {
    const inFlight = [...this.active].map(([[start, stop], sent]) => ({start, stop, sent}));
    const sending = inFlight.reduce((sum, item) => sum + item.sent, 0);
    const committedBytes = total(this.committed);
    return {
      file: this.file, url: this.resource, size: this.file.size, committed: this.committed.map((r) => [...r]),
      inFlight, committedBytes, sentThisRun: this.sent + sending,
      loaded: Math.min(this.file.size, committedBytes + sending),
    };
  }

  emit() {
    if (this.options.onProgress) this.options.onProgress(this.progress());
  }

  learn(xhr) {
    const ranges = parseCommittedRanges(xhr.getResponseHeader("Committed-Ranges"));
    if (ranges) this.committed = normalize(this.committed.concat(ranges));
  }

  async run() {
    this.emit();
    const lanes = [];
    for (let i = 0; i < Math.max(1, this.options.parallel); i++) lanes.push(this.lane());
    const results = await Promise.allSettled(lanes);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  async lane() {
    while (this.queue.length) {
      if (this.failed) return;
      const segment = this.queue.shift();
      try {
        await this.segment(segment);
      } catch (error) {
        this.failed = true;
        throw error;
      }
    }
  }

  async segment(segment) {
    for (let attempt = 1; ; attempt++) {
      this.active.set(segment, 0);
      let error;
      try {
        const xhr = await send(this.resource, this.file, segment, this.options, (sent) => {
          this.active.set(segment, sent);
          this.emit();
        });
        if (xhr.status >= 200 && xhr.status < 300) {
          this.committed = normalize(this.committed.concat([segment]));
          this.learn(xhr);
          this.sent += segment[1] - segment[0];
          this.active.delete(segment);
          this.emit();
          return;
        }
        this.learn(xhr); // errors about the resource carry its state too
        let problem = null;
        try {
          problem = JSON.parse(xhr.responseText);
        } catch (ignored) {
          // not a problem document
        }
        error = new UploadError(`${xhr.status} ${(problem && (problem.detail || problem.title)) || xhr.statusText}`, {
          status: xhr.status, problem, retryAfter: Number(xhr.getResponseHeader("Retry-After")) || null,
        });
      } catch (thrown) {
        error = thrown;
      } finally {
        this.active.delete(segment);
      }
      if (error.name === "AbortError" || !RETRYABLE.has(error.status) || attempt > this.options.retries) {
        this.emit();
        throw error;
      }
      const delay = error.retryAfter ? error.retryAfter * 1000 : Math.min(10000, 500 * 2 ** (attempt - 1));
      this.emit();
      if (this.options.onRetry) this.options.onRetry({error, attempt, of: this.options.retries, delay, segment});
      await sleep(delay, this.options.signal);
      // What did the interrupted request leave committed? Send only the rest of this segment.
      try {
        const state = await fetchState(this.resource, {headers: this.options.headers, signal: this.options.signal});
        this.committed = normalize(this.committed.concat(state.committed));
      } catch (failure) {
        if (failure.name === "AbortError") throw failure;
      }
      const rest = gaps(this.committed, this.file.size)
        .map(([a, b]) => [Math.max(a, segment[0]), Math.min(b, segment[1])])
        .filter(([a, b]) => b > a);
      if (!rest.length) return;
      segment = rest.shift();
      this.queue.unshift(...rest);
    }
  }
}

/**
 * Upload `file` (a File or Blob) to `url` (the collection, or a signed creation URL); resolves
 * with {url, size, sentThisRun, resumed} once the server has committed every byte. Rejects with
 * an AbortError when `options.signal` is aborted (call again to resume), or an UploadError.
 */
export async function upload(file, url, options = {}) {
  const opts = {...DEFAULTS, ...options};
  opts.headers = {...(options.headers || {})};
  opts.segmentSize = Math.max(1, Math.floor(opts.segmentSize));
  const storage = opts.storage === undefined ? defaultStorage() : opts.storage;
  const key = storageKey(url, file);
  let resource = opts.resumeUrl || null;
  if (!resource && storage) {
    try {
      resource = JSON.parse(storage.getItem(key) || "null")?.url || null;
    } catch (error) {
      resource = null;
    }
  }
  let committed = [];
  let resumed = false;
  if (resource) {
    try {
      const state = await fetchState(resource, {headers: opts.headers, signal: opts.signal});
      if (state.length !== null && state.length !== file.size) throw new UploadError("length differs", {status: 404});
      committed = state.committed;
      resumed = true;
    } catch (error) {
      if (!GONE.has(error.status)) throw error;
      resource = null; // gone (expired, deleted): start over
      if (storage) storage.removeItem(key);
    }
  }
  if (!resource) {
    resource = await create(file, url, opts);
    if (storage) storage.setItem(key, JSON.stringify({url: resource, started: Date.now()}));
  }
  const transfer = new Transfer(file, resource, committed, opts);
  await transfer.run();
  if (storage) storage.removeItem(key);
  return {url: resource, size: file.size, sentThisRun: transfer.sent, resumed};
}
