// The read-only status page of one resource: its live extent map, from its own state endpoints.
// `?url=` names the resource (a signed URL works as it is); a bearer token may be typed in.

import {formatBytes} from "./extentmap.js";
import {watchExtentMap} from "./extentmap.js";
import {total} from "./byterange.js";

const $ = (selector) => document.querySelector(selector);
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
const url = new URLSearchParams(location.search).get("url");
let watching = null;

if (meta("byterange-auth") === "off") $("#token-field").hidden = true;

function show(state) {
  $("#length").textContent = state.length === null ? "not known yet" : `${formatBytes(state.length)} (${state.length} bytes)`;
  $("#complete").textContent = state.complete ? "yes" : "no";
  const done = total(state.committed);
  const share = state.length ? ` (${((100 * done) / state.length).toFixed(1)}%)` : "";
  $("#committed").textContent = `${formatBytes(done)}${share} in ${state.committed.length} range(s)`;
  $("#in-flight").textContent = `${state.inFlight.length} range(s), ${formatBytes(total(state.inFlight))}`;
  $("#updated").textContent = new Date().toLocaleTimeString();
  $("#error").textContent = "";
  document.body.dataset.ready = "true";
}

function watch() {
  if (watching) watching.abort();
  watching = new AbortController();
  const token = $("#token").value.trim();
  watchExtentMap($("#map"), url, {
    headers: token ? {Authorization: `Bearer ${token}`} : {},
    signal: watching.signal,
    onState: show,
    onError: (error) => {
      $("#error").textContent = error.message;
      document.body.dataset.ready = "error";
    },
  });
}

if (!url) {
  $("#error").textContent = "Give the resource as ?url=… (its URL, or a signed URL for it).";
} else {
  $("#resource").textContent = url.split("?")[0];
  $("#token").addEventListener("change", watch);
  watch();
}
