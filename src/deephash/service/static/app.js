// The search page of `deephash serve`: plain JavaScript against the service's JSON API
// (GET info, POST search, GET items/{id}/search, GET items/{id}/thumbnail). Every URL is
// relative to the page, so the app also works behind a proxy under a sub-path.
"use strict";

const state = {
  info: null,     // the answer of GET info
  last: null,     // the query to re-run when k or the radius changes: {file} or {id}
  queryUrl: null, // object URL of an uploaded query image, revoked when replaced
  ticket: 0,      // answers of a query that is no longer the latest are dropped
  token: null,    // the server's token, when it asks for one (see serverToken)
};

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

// The API's one-line `error`, or what little an answer that is not JSON tells.
async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") {
      return body.error;
    }
  } catch (ignored) {
    // not JSON (a proxy's page, an empty body): fall back to the status line
  }
  return `the server answered ${response.status} ${response.statusText}`.trim();
}

// The server's token, when it asks for one (`deephash serve --token`): opened as
// `/#token=TOKEN`, the fragment (never sent to the server) is kept for this tab, sent as
// `Authorization: Bearer` with every request and as a same-site cookie for the thumbnails.
function serverToken() {
  const given = new URLSearchParams(location.hash.slice(1)).get("token");
  if (given) {
    sessionStorage.setItem("deephash-token", given);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = sessionStorage.getItem("deephash-token");
  if (token) {
    document.cookie = `deephash_token=${token}; path=/; SameSite=Strict`;
  }
  return token;
}

// fetch + JSON with the service's error convention; throws an Error carrying the message.
// Every request but a GET carries X-Requested-With: the server refuses a write without it
// (a page of another origin cannot send it).
async function api(url, options = {}) {
  const headers = new Headers(options.headers);
  if ((options.method || "GET") !== "GET") {
    headers.set("X-Requested-With", "deephash-page");
  }
  if (state.token) {
    headers.set("Authorization", `Bearer ${state.token}`);
  }
  let response;
  try {
    response = await fetch(url, { ...options, headers });
  } catch (failure) {
    throw new Error(`cannot reach the search service (${failure.message}); is it running?`);
  }
  if (!response.ok) {
    throw new Error(await errorOf(response));
  }
  return response.json();
}

function describeIndex(info) {
  const size = info.kind === "codes" ? `${info.bits}-bit codes` : `${info.dim}-d embeddings`;
  return `${info.size.toLocaleString("en")} items · ${size} · ${info.index} index · ` +
    `${info.backbone} features`;
}

async function loadInfo() {
  try {
    const info = await api("info");
    state.info = info;
    $("info").textContent = describeIndex(info);
    $("info").dataset.kind = info.kind;
    $("k").max = String(info.max_k);
    $("k").value = String(Math.min(Number($("k").value) || 10, info.max_k));
    $("radius-field").hidden = info.kind !== "codes";
    describeRelevance(info);
  } catch (failure) {
    $("info").textContent = "index description unavailable";
    showError(failure.message);
  }
}

function queryParameters() {
  const params = new URLSearchParams({ k: $("k").value || "10" });
  const radius = $("radius").value;
  if (state.info && state.info.kind === "codes" && radius !== "") {
    params.set("radius", radius);
  }
  return params;
}

function formatDistance(distance) {
  if (state.info && state.info.kind === "codes") {
    return String(Math.round(distance));
  }
  return distance.toFixed(3);
}

// An index without labels (an unlabelled folder) marks nothing and names no labels.
function hasLabels() {
  return !state.info || state.info.labelled !== 0;
}

// The hint under the results: what a marked result means, in the index's terms (a class
// for single-label data, a shared label for multi-label data), or nothing without labels.
function describeRelevance(info) {
  const rule = $("relevance-rule");
  rule.hidden = info.labelled === 0;
  if (info.multi_label) {
    const tag = document.createElement("span");
    tag.className = "wrong-tag";
    tag.textContent = "shares no label";
    rule.replaceChildren("Results that share no label with the query are marked ", tag, ".");
  }
}

// What a result that shares no label with the query is marked with.
function wrongText() {
  return state.info && state.info.multi_label ? "shares no label" : "wrong class";
}

// The item's labels by name ("cat, dog"), "unlabelled", or "" in an index without labels.
function className(item) {
  if (!hasLabels()) {
    return "";
  }
  if (Array.isArray(item.labels)) {
    return item.labels.length > 0 ? item.labels.join(", ") : "unlabelled";
  }
  if (item.class !== null && item.class !== undefined) {
    return String(item.class);
  }
  return item.label === null || item.label === undefined ? "unlabelled" : `label ${item.label}`;
}

// "item 3, cat" or "item 3" where the item's labels are not shown.
function itemText(item) {
  const name = className(item);
  return name ? `item ${item.id}, ${name}` : `item ${item.id}`;
}

function thumbnailUrl(id) {
  return `items/${encodeURIComponent(id)}/thumbnail`;
}

function showQuery(src, caption, alt) {
  const image = $("query-image");
  image.src = src;
  image.alt = alt;
  $("query-caption").textContent = caption;
  $("query-section").hidden = false;
}

// One grid cell: a button (thumbnail, rank, distance, labels) that searches from the item;
// marked when the server says it shares no label with the query (an upload's hits and
// unlabelled items are never marked: nothing is known of them).
function resultCell(hit, rank) {
  const cell = document.createElement("li");
  cell.className = "hit";
  cell.dataset.id = String(hit.id);
  const wrong = hit.shares_label === false;
  if (wrong) {
    cell.classList.add("wrong");
  }
  const button = document.createElement("button");
  button.type = "button";
  button.title = `${hit.path} — search from this image`;
  const image = document.createElement("img");
  image.src = thumbnailUrl(hit.id);
  image.alt = `result ${rank}: ${itemText(hit)}`;
  image.width = 96;
  image.height = 96;
  const text = document.createElement("span");
  text.className = "caption";
  const distance = document.createElement("span");
  distance.className = "distance";
  distance.textContent = `#${rank} · distance ${formatDistance(hit.distance)}`;
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = className(hit) + (wrong ? ` · ${wrongText()}` : "");
  text.append(distance, label);
  button.append(image, text);
  button.addEventListener("click", () => searchItem(hit.id));
  cell.append(button);
  return cell;
}

function showResults(results) {
  const grid = $("results");
  grid.replaceChildren(...results.map((hit, i) => resultCell(hit, i + 1)));
  grid.dataset.count = String(results.length);
  $("results-section").hidden = false;
  if (results.length === 0) {
    setStatus("no indexed item within that radius");
  }
}

// How many indexed items share the Hamming distance of the last result (codes only), and
// what chose the ones shown among them.
function showTies(ties) {
  const line = $("ties");
  if (!ties || ties.count <= ties.shown) {
    line.textContent = "";
    line.hidden = true;
    return;
  }
  const chosen = ties.order === "random" ? "a seeded random order (this index keeps no " +
    "continuous outputs)" : "the model's continuous outputs";
  line.textContent = `${ties.count.toLocaleString("en")} items share Hamming distance ` +
    `${ties.distance} with the last result; ${ties.shown} of them are shown, chosen by ` +
    `${chosen}.`;
  line.hidden = false;
}

// Runs one query; `request` returns the API's answer, `show` draws it.
async function run(request, show, what) {
  const ticket = ++state.ticket;
  showError("");
  setStatus(`searching ${what}…`);
  document.body.setAttribute("aria-busy", "true");
  const start = performance.now();
  try {
    const answer = await request();
    if (ticket !== state.ticket) {
      return;
    }
    const ms = Math.round(performance.now() - start);
    setStatus(`${what}: ${answer.results.length} results in ${ms} ms`);
    show(answer);
    showTies(answer.ties);
  } catch (failure) {
    if (ticket === state.ticket) {
      setStatus("");
      showError(failure.message);
    }
  } finally {
    if (ticket === state.ticket) {
      document.body.removeAttribute("aria-busy");
    }
  }
}

function searchFile(file) {
  state.last = { file };
  const limit = state.info ? state.info.max_upload_bytes : Infinity;
  if (file.size > limit) {
    showError(`${file.name} is ${file.size.toLocaleString("en")} bytes, over the server's ` +
      `limit of ${limit.toLocaleString("en")}; choose a smaller image`);
    return;
  }
  if (state.queryUrl) {
    URL.revokeObjectURL(state.queryUrl);
  }
  state.queryUrl = URL.createObjectURL(file);
  const form = new FormData();
  form.append("image", file, file.name);
  run(() => api(`search?${queryParameters()}`, { method: "POST", body: form }),
    (answer) => {
      showQuery(state.queryUrl, `uploaded: ${file.name}`, `query: the uploaded ${file.name}`);
      $("query").dataset.id = "";
      showResults(answer.results);
    }, file.name);
}

function searchItem(id) {
  state.last = { id };
  run(() => api(`items/${encodeURIComponent(id)}/search?${queryParameters()}`),
    (answer) => {
      const item = answer.query;
      const name = className(item);
      showQuery(thumbnailUrl(item.id), [`item ${item.id}`, name, item.path].filter(Boolean)
        .join(" · "), `query: ${itemText(item)}`);
      $("query").dataset.id = String(item.id);
      showResults(answer.results);
    }, `item ${id}`);
}

function rerun() {
  if (!$("k").checkValidity() || !$("radius").checkValidity()) {
    showError(`k must be a whole number from 1 to ${$("k").max}, the radius 0 or more`);
    return;
  }
  if (state.last && state.last.file) {
    searchFile(state.last.file);
  } else if (state.last) {
    searchItem(state.last.id);
  }
}

function wireDropZone() {
  const zone = $("drop");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = event.dataTransfer ? event.dataTransfer.files : null;
    if (files && files.length > 0) {
      searchFile(files[0]);
    } else {
      showError("the drop held no file; drop an image file (PNG, JPEG, …)");
    }
  });
  $("file").addEventListener("change", () => {
    const files = $("file").files;
    if (files && files.length > 0) {
      searchFile(files[0]);
    }
    $("file").value = ""; // choosing the same file again searches again
  });
}

document.addEventListener("DOMContentLoaded", () => {
  state.token = serverToken();
  wireDropZone();
  $("query-form").addEventListener("submit", (event) => event.preventDefault());
  $("k").addEventListener("change", rerun);
  $("radius").addEventListener("change", rerun);
  loadInfo();
});
