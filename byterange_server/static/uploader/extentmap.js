// extentmap.js: a picture of a resource's length -- committed ranges, ranges in flight, holes.
//
//   import {renderExtentMap, watchExtentMap} from "./extentmap.js";
//   renderExtentMap(element, {length, committed, inFlight, sending});   // ranges half-open
//   await watchExtentMap(element, resourceUrl, {headers, signal});      // polls until complete
//
// The element gets an SVG (no inline style: CSP-friendly) and data attributes a test or a script
// can read: data-length, data-committed and data-in-flight (inclusive "first-last" pairs, or
// "none"), data-complete.

import {fetchState} from "./byterange.js";
import {formatRanges} from "./byterange.js";
import {gaps} from "./byterange.js";
import {normalize} from "./byterange.js";
import {total} from "./byterange.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 1000;

export function formatBytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit ? `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}` : `${n} B`;
}

function rect(kind, start, stop, length) {
  const node = document.createElementNS(SVG, "rect");
  const x = (start / length) * WIDTH;
  // At least a sliver, so a one-byte range still shows.
  const width = Math.max(((stop - start) / length) * WIDTH, 0.6);
  node.setAttribute("class", kind);
  node.setAttribute("x", String(Math.min(x, WIDTH - width)));
  node.setAttribute("y", "0");
  node.setAttribute("width", String(width));
  node.setAttribute("height", "10");
  const title = document.createElementNS(SVG, "title");
  title.textContent = `${kind}: bytes ${start}-${stop - 1} (${formatBytes(stop - start)})`;
  node.append(title);
  return node;
}

/**
 * Draw the map into `element`. `committed` and `inFlight` are half-open [start, stop) ranges;
 * `sending` optional [start, stop) ranges this page has sent but the server has not committed.
 */
export function renderExtentMap(element, {length, committed = [], inFlight = [], sending = [], complete = false}) {
  committed = normalize(committed);
  // In flight means not committed yet: a committed range drawn over it wins.
  inFlight = normalize(inFlight);
  sending = normalize(sending);
  element.classList.add("extent-map");
  element.dataset.length = length === null ? "unknown" : String(length);
  element.dataset.committed = formatRanges(committed);
  element.dataset.inFlight = formatRanges(inFlight);
  element.dataset.complete = complete ? "true" : "false";
  let svg = element.querySelector("svg");
  if (!svg) {
    svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${WIDTH} 10`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    element.append(svg);
    const legend = document.createElement("div");
    legend.className = "legend";
    element.append(legend);
  }
  const extent = length || Math.max(1, ...committed.map((r) => r[1]), ...inFlight.map((r) => r[1]));
  const nodes = [rect("hole", 0, extent, extent)];
  for (const [a, b] of inFlight) nodes.push(rect("in-flight", a, b, extent));
  for (const [a, b] of sending) nodes.push(rect("sending", a, b, extent));
  for (const [a, b] of committed) nodes.push(rect("committed", a, b, extent));
  svg.replaceChildren(...nodes);
  const done = total(committed);
  const holes = length === null ? null : gaps(normalize(committed.concat(inFlight)), length);
  svg.setAttribute("aria-label", `${formatBytes(done)} of ${formatBytes(length)} committed`);
  const parts = [
    ["committed", `committed ${formatBytes(done)} in ${committed.length} range${committed.length === 1 ? "" : "s"}`],
    ["in-flight", `in flight ${inFlight.length}`],
    ["hole", holes === null ? "holes: length unknown" : `holes ${holes.length} (${formatBytes(total(holes))})`],
  ];
  element.querySelector(".legend").replaceChildren(...parts.map(([kind, text]) => {
    const item = document.createElement("span");
    item.className = `key ${kind}`;
    item.textContent = text;
    return item;
  }));
}

/**
 * Keep `element` showing the server's state of `url` (HEAD and the committed-ranges document,
 * with the caller's `headers`), every `interval` ms, until the resource is complete or `signal`
 * aborts. `onState(state)` sees each state; a failed poll goes to `onError` and is retried.
 */
export async function watchExtentMap(element, url, {headers = {}, signal, interval = 1000, onState, onError} = {}) {
  for (;;) {
    try {
      const state = await fetchState(url, {headers, signal, inFlight: true});
      renderExtentMap(element, state);
      if (onState) onState(state);
      if (state.complete) return state;
    } catch (error) {
      if (error.name === "AbortError") return null;
      if (onError) onError(error);
    }
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, interval);
      if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
    });
    if (signal && signal.aborted) return null;
  }
}
