// Picmetric's try-it page: choose a photo and models, POST /v1/analyze, draw the answer; and
// the key's bulk jobs with their progress (GET /v1/jobs).
// Plain JavaScript, no dependencies. The API key stays in this tab (sessionStorage).
"use strict";

const KEY_STORAGE = "picmetric.apiKey";
const SVG = "http://www.w3.org/2000/svg";
const MODEL_TITLES = { resnet50: "ResNet50", yolov3: "YOLOv3", mtcnn: "MTCNN" };

const $ = (id) => document.getElementById(id);
const form = $("analyze-form");
const fileInput = $("file-input");
const urlInput = $("url-input");
const dropZone = $("drop-zone");
const keyInput = $("key-input");
const photo = $("photo");
const overlay = $("overlay");

let chosenFile = null; // the File to upload, or null when a URL is used
let photoObjectUrls = []; // object URLs of the photo shown, revoked when the next is shown
let lastAnswer = null; // the last successful /v1/analyze answer, redrawn on resize

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, "X-API-Key": key } : extra;
}

function element(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

function svgElement(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function modelTitle(name) {
  return MODEL_TITLES[name] || name;
}

function percent(confidence) {
  return `${(confidence * 100).toFixed(1)}%`;
}

function listNames(names) {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

function randomWarning(names) {
  const verb = names.length === 1 ? "runs" : "run";
  const their = names.length === 1 ? "its" : "their";
  return (
    `Random weights: ${listNames(names.map(modelTitle))} ${verb} on random weights, ` +
    `so ${their} labels and boxes are meaningless (see "Weights" in the README).`
  );
}

function showWarning(target, names) {
  target.hidden = names.length === 0;
  target.textContent = names.length ? randomWarning(names) : "";
}

// ---- errors ----------------------------------------------------------------------------------

function showError(message, errortype = null, status = null) {
  const box = $("error");
  box.replaceChildren(element("strong", {}, "Error: "), document.createTextNode(message));
  if (errortype || status) {
    const detail = [errortype, status ? `HTTP ${status}` : null].filter(Boolean).join(", ");
    box.append(" (", element("code", { class: "errortype" }, detail), ")");
  }
  if (errortype === "unauthorized") {
    box.append(" Enter the gateway's API key under “API key”.");
    $("key-details").open = true;
  }
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
}

// A gateway answer as {ok, status, body}; a body that is not JSON becomes an error message.
async function callGateway(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: headers(init.headers || {}) });
  } catch (error) {
    return { ok: false, status: null, body: { message: `The gateway could not be reached (${error}).` } };
  }
  let body;
  try {
    body = await response.json();
  } catch {
    body = { message: `The gateway answered HTTP ${response.status} ${response.statusText}.` };
  }
  return { ok: response.ok, status: response.status, body };
}

// ---- models ----------------------------------------------------------------------------------

async function loadModels() {
  const list = $("models-list");
  const answer = await callGateway("/v1/models");
  if (!answer.ok) {
    list.replaceChildren(element("p", { class: "muted" }, "The models could not be listed."));
    showError(answer.body.message || "Listing the models failed.", answer.body.errortype, answer.status);
    return;
  }
  clearError();
  const random = [];
  list.replaceChildren();
  for (const model of answer.body) {
    const kind = (model.weights && model.weights.kind) || "unknown";
    if (kind === "random") random.push(model.name);
    const id = `model-${model.name}`;
    const box = element("input", { type: "checkbox", id, name: "models", value: model.name });
    box.checked = model.ready;
    box.disabled = !model.ready;
    const notes = [`${kind} weights`];
    if (!model.ready) notes.push("not ready");
    const label = element("label", { for: id });
    label.append(box, `${modelTitle(model.name)} `);
    label.append(element("span", { class: kind === "random" ? "random" : "muted" }, `(${notes.join(", ")})`));
    list.append(label);
  }
  showWarning($("models-warning"), random);
}

function chosenModels() {
  return [...document.querySelectorAll('#models-list input[name="models"]:checked')].map((b) => b.value);
}

// ---- the photo source --------------------------------------------------------------------------

function useFile(file) {
  chosenFile = file;
  if (file) urlInput.value = "";
}

fileInput.addEventListener("change", () => useFile(fileInput.files[0] || null));

urlInput.addEventListener("input", () => {
  if (urlInput.value.trim()) {
    fileInput.value = "";
    chosenFile = null;
  }
});

for (const type of ["dragenter", "dragover"]) {
  dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
}
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  const transfer = event.dataTransfer;
  if (transfer.files.length) {
    fileInput.files = transfer.files;
    useFile(transfer.files[0]);
    return;
  }
  const dropped = (transfer.getData("text/uri-list") || transfer.getData("text/plain")).trim();
  if (dropped) {
    urlInput.value = dropped.split("\n")[0];
    urlInput.dispatchEvent(new Event("input"));
  }
});

// ---- the request -----------------------------------------------------------------------------

function options() {
  const body = {};
  const models = chosenModels();
  if (models.length) body.models = models;
  const threshold = $("threshold-input").value.trim();
  if (threshold !== "") body.threshold = Number(threshold);
  const maxResults = $("max-results-input").value.trim();
  if (maxResults !== "") body.max_results = Number(maxResults);
  const minFaceSize = $("min-face-size-input").value.trim();
  if (minFaceSize !== "") body.min_face_size = minFaceSize;
  return body;
}

function analyzeRequest() {
  const body = options();
  if (chosenFile) {
    const data = new FormData();
    data.append("file", chosenFile, chosenFile.name);
    for (const [name, value] of Object.entries(body)) {
      data.append(name, Array.isArray(value) ? value.join(",") : String(value));
    }
    return { method: "POST", body: data };
  }
  const url = urlInput.value.trim();
  if (!url) return null;
  return {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ url, ...body }),
  };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  const request = analyzeRequest();
  if (!request) {
    showError("Choose a photo to upload or paste an image URL.");
    return;
  }
  if (!chosenModels().length) {
    showError("Choose at least one model.");
    return;
  }
  const button = $("analyze-button");
  button.disabled = true;
  $("busy").textContent = "Analysing…";
  const source = chosenFile ? { file: chosenFile } : { url: urlInput.value.trim() };
  try {
    const answer = await callGateway("/v1/analyze", request);
    if (!answer.ok) {
      showError(answer.body.message || "The analysis failed.", answer.body.errortype, answer.status);
      $("busy").textContent = "";
      return;
    }
    await showAnswer(answer.body, source, request);
    $("busy").textContent = "Done.";
  } finally {
    button.disabled = false;
  }
});

// ---- the answer ------------------------------------------------------------------------------

// The photo as the browser shows it: the uploaded file or the http(s) URL. When the browser cannot
// show it (HEIC in Chromium and Firefox, s3://, a host only the gateway reaches), the gateway's
// upright JPEG of it from /v1/annotate: the same request, which the store answers (same bytes,
// models and options), so no model runs again. When that fails too, a blank area of the photo's
// size. Answers how it was shown: "direct", "rendered" or "blank".
async function loadPhoto(source, image, request) {
  for (const url of photoObjectUrls) URL.revokeObjectURL(url);
  photoObjectUrls = [];
  let direct = null;
  if (source.file) {
    direct = URL.createObjectURL(source.file);
    photoObjectUrls.push(direct);
  } else if (/^https?:\/\//i.test(source.url)) {
    direct = source.url;
  }
  if (direct && (await showSource(direct))) return "direct";
  const rendered = await renderedPhoto(request);
  if (rendered && (await showSource(rendered))) return "rendered";
  await showSource(
    "data:image/svg+xml," +
      encodeURIComponent(
        `<svg xmlns="${SVG}" width="${image.width}" height="${image.height}">` +
          `<rect width="100%" height="100%" fill="#e5e7eb"/></svg>`,
      ),
  );
  return "blank";
}

function showSource(src) {
  return new Promise((resolve) => {
    photo.onload = () => resolve(true);
    photo.onerror = () => resolve(false);
    photo.classList.toggle("blank", src.startsWith("data:"));
    photo.src = src;
  });
}

async function renderedPhoto(request) {
  try {
    const response = await fetch("/v1/annotate", { ...request, headers: headers(request.headers || {}) });
    if (!response.ok) return null;
    const url = URL.createObjectURL(await response.blob());
    photoObjectUrls.push(url);
    return url;
  } catch {
    return null;
  }
}

const SHOWN_NOTES = {
  direct: "",
  rendered: " (the browser cannot show this photo: shown as the gateway's upright JPEG of it)",
  blank: " (the browser could not show this photo: boxes are drawn on a blank area)",
};

async function showAnswer(answer, source, request) {
  lastAnswer = answer;
  $("result").hidden = false;
  const shown = await loadPhoto(source, answer.image, request);
  const { width, height, sha256 } = answer.image;
  $("caption").textContent =
    `${width} × ${height} pixels, sha256 ${sha256.slice(0, 12)}…` +
    SHOWN_NOTES[shown] +
    (answer.cached ? ". Answered from the store (cached): same bytes, models and options." : ".");
  drawOverlay(answer);
  showSummary(answer.summary);
  showLabels(answer.results.resnet50);
  showObjects(answer.results.yolov3);
  showFaces(answer.results.mtcnn);
  showModels(answer);
  showWaterfall(answer);
  $("raw-json").textContent = JSON.stringify(answer, null, 2);
  $("result").scrollIntoView({ block: "start" });
}

// The overlay's viewBox is the photo's pixels, so the answer's coordinates are drawn as they are
// and the browser scales them with the displayed photo; text and markers are sized per screen pixel.
function drawOverlay(answer) {
  const { width, height } = answer.image;
  overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  overlay.replaceChildren();
  const scale = width / Math.max(photo.clientWidth, 1); // photo pixels per screen pixel
  const fontSize = 13 * scale;
  const tag = (x, y, text, kind) => {
    const textWidth = text.length * fontSize * 0.6 + 6 * scale;
    const tagHeight = fontSize * 1.35;
    const top = y - tagHeight >= 0 ? y - tagHeight : y;
    x = Math.max(0, Math.min(x, width - textWidth)); // inside the photo where it fits
    const group = svgElement("g", { class: "tag" });
    group.append(
      svgElement("rect", { class: `tag-background ${kind}-tag`, x, y: top, width: textWidth, height: tagHeight }),
    );
    const label = svgElement("text", { x: x + 3 * scale, y: top + fontSize * 1.05, "font-size": fontSize });
    label.textContent = text;
    group.append(label);
    return group;
  };
  const rectangle = (box, kind, index) =>
    svgElement("rect", {
      class: kind,
      "data-index": index,
      x: box.x_min,
      y: box.y_min,
      width: box.x_max - box.x_min,
      height: box.y_max - box.y_min,
    });
  const title = (text) => {
    const node = svgElement("title");
    node.textContent = text;
    return node;
  };

  (answer.results.yolov3 || []).forEach((found, index) => {
    const text = `#${index} ${found.label} ${percent(found.confidence)}`;
    const group = svgElement("g", { class: "detection object-detection" });
    group.append(title(text), rectangle(found.box, "object", index), tag(found.box.x_min, found.box.y_min, text, "object"));
    overlay.append(group);
  });
  (answer.results.mtcnn || []).forEach((face, index) => {
    const person = Number.isInteger(face.person) ? ` → person #${face.person}` : "";
    const text = `face ${percent(face.confidence)}${person}`;
    const group = svgElement("g", { class: "detection face-detection" });
    group.append(title(text), rectangle(face.box, "face", index));
    for (const [name, [x, y]] of Object.entries(face.keypoints)) {
      const point = svgElement("circle", { class: "landmark", "data-name": name, "data-face": index, cx: x, cy: y, r: 3.5 * scale });
      point.append(title(name.replace("_", " ")));
      group.append(point);
    }
    group.append(tag(face.box.x_min, face.box.y_min, text, "face"));
    overlay.append(group);
  });
}

window.addEventListener("resize", () => {
  if (lastAnswer && !$("result").hidden) drawOverlay(lastAnswer);
});

function describe(value) {
  // null: the model that counts it did not run, which is not zero
  if (value === null || value === undefined) return "not counted";
  if (Array.isArray(value)) return value.length ? value.join(", ") : "none";
  if (value && typeof value === "object") {
    const entries = Object.entries(value);
    return entries.length ? entries.map(([k, v]) => `${k}: ${v}`).join(", ") : "none";
  }
  return String(value);
}

function showSummary(summary) {
  const list = $("summary");
  list.replaceChildren();
  for (const [name, value] of Object.entries(summary)) {
    list.append(element("dt", {}, name.replaceAll("_", " ")), element("dd", { "data-field": name }, describe(value)));
  }
}

function fillList(list, items, render, nothing) {
  list.replaceChildren();
  if (items === null || items === undefined) {
    list.append(element("li", { class: "muted none" }, "not run"));
    return;
  }
  if (!items.length) {
    list.append(element("li", { class: "muted none" }, nothing));
    return;
  }
  items.forEach((item, index) => list.append(render(item, index)));
}

function showLabels(labels) {
  fillList($("labels"), labels, (found) => {
    const item = element("li", { class: "label" });
    item.append(element("span", { class: "name" }, found.label), " ", element("span", { class: "confidence" }, percent(found.confidence)));
    return item;
  }, "none above the threshold");
}

function showObjects(objects) {
  fillList($("objects"), objects, (found) => {
    const b = found.box;
    const corners = `(${Math.round(b.x_min)}, ${Math.round(b.y_min)})–(${Math.round(b.x_max)}, ${Math.round(b.y_max)})`;
    return element("li", { class: "object" }, `${found.label} ${percent(found.confidence)}, box ${corners}`);
  }, "none above the threshold");
}

function showFaces(faces) {
  fillList($("faces"), faces, (face) => {
    let text = `face ${percent(face.confidence)}`;
    if (Number.isInteger(face.person)) text += `, in person #${face.person}`;
    else if (face.person === null) text += ", in no person box";
    return element("li", { class: "face" }, text);
  }, "none above the threshold");
}

// The analysis's stages and models on one time axis, from its timings: the fetch, then the
// decode, then the quality figures beside the preparation and the models (all called at once),
// then the store (the rest of `total`). A cached answer ran no stage but its fetch.
function waterfallSteps(answer) {
  const t = answer.timings_ms || {};
  const steps = [];
  const step = (name, start, ms, kind) => {
    if (typeof ms === "number") steps.push({ name, start, ms, kind });
  };
  const fetched = t.fetch || 0;
  step("fetch", 0, t.fetch, "stage");
  step("decode", fetched, t.decode, "stage");
  const decoded = fetched + (t.decode || 0);
  step("quality", decoded, t.quality, "stage");
  step("preprocess", decoded, t.preprocess, "stage");
  if (typeof t.decode === "number") {
    const called = decoded + (t.preprocess || 0);
    for (const run of answer.models) step(modelTitle(run.name), called, run.latency_ms, "model");
  }
  const end = Math.max(t.total || 0, ...steps.map((s) => s.start + s.ms));
  return { steps, end };
}

function showWaterfall(answer) {
  const list = $("waterfall");
  list.replaceChildren();
  const { steps, end } = waterfallSteps(answer);
  for (const s of steps) {
    const item = element("li", { class: `step ${s.kind}`, "data-step": s.name });
    const bar = element("span", { class: "bar" });
    // Set through the CSSOM, which the page's Content-Security-Policy allows (inline styles not).
    bar.style.marginLeft = `${(100 * s.start) / Math.max(end, 1e-9)}%`;
    bar.style.width = `${Math.max((100 * s.ms) / Math.max(end, 1e-9), 0.5)}%`;
    const track = element("span", { class: "track" });
    track.append(bar);
    item.append(element("span", { class: "name" }, s.name), track,
      element("span", { class: "number" }, `${s.ms.toFixed(1)} ms`));
    list.append(item);
  }
  const template = list.dataset.traceUrl || "";
  const link = $("trace-link");
  if (template && answer.trace_id) {
    link.href = template.replace("{trace_id}", encodeURIComponent(answer.trace_id));
    $("trace").hidden = false;
  } else {
    link.removeAttribute("href");
    $("trace").hidden = true;
  }
}

function showModels(answer) {
  const body = $("models-table").tBodies[0];
  body.replaceChildren();
  const random = [];
  for (const run of answer.models) {
    const kind = (run.weights && run.weights.kind) || "unknown";
    if (kind === "random") random.push(run.name);
    const row = element("tr", { "data-model": run.name });
    row.append(
      element("td", {}, modelTitle(run.name)),
      element("td", {}, run.version ?? "?"),
      element("td", { class: kind === "random" ? "random" : "" }, kind),
      element("td", { class: "number latency" }, `${run.latency_ms.toFixed(1)} ms`),
    );
    body.append(row);
  }
  showWarning($("result-warning"), random);
  // The answer's other warnings (a model skipped, a photo reduced) in the gateway's own words.
  const others = (answer.warnings || []).filter((w) => w.kind !== "random_weights");
  for (const warning of others) {
    const target = $("result-warning");
    target.hidden = false;
    target.append(element("p", { "data-warning": warning.kind }, warning.message));
  }
  const timings = Object.entries(answer.timings_ms || {}).map(([k, v]) => `${k} ${v.toFixed(1)} ms`);
  $("timings").textContent = timings.length ? `Timings: ${timings.join(" · ")}` : "";
}

// ---- bulk jobs -------------------------------------------------------------------------------

const JOBS_REFRESH_MS = 2000; // while a job is queued or running
const OPEN_JOB_STATES = new Set(["queued", "running"]);
let jobsTimer = null;

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  return `${Math.floor(whole / 3600)} h ${Math.floor((whole % 3600) / 60)} min`;
}

function jobRow(job) {
  const counts = job.counts;
  const answered = counts.done + counts.skipped + counts.failed;
  const row = element("tr", { "data-job": job.id, "data-state": job.state });
  const rate = job.photos_per_second === null ? "—" : job.photos_per_second.toFixed(2);
  const cells = [
    [job.id.slice(0, 8), "id"],
    [job.source.description, "source"],
    [job.state, "state"],
    [`${answered} / ${counts.total}`, "answered number"],
    [String(counts.failed), "failed number"],
    [rate, "rate number"],
    [OPEN_JOB_STATES.has(job.state) ? duration(job.seconds_left) : "—", "left number"],
  ];
  for (const [text, kind] of cells) row.append(element("td", { class: kind }, text));
  row.firstChild.title = job.id;
  return row;
}

// GET /v1/jobs into the table; again in JOBS_REFRESH_MS while one is unfinished. Its failures
// are told in the section only: the jobs are an extra, the analysis form stays usable.
async function loadJobs() {
  clearTimeout(jobsTimer);
  const table = $("jobs-table");
  const status = $("jobs-status");
  const answer = await callGateway("/v1/jobs?limit=20");
  if (!answer.ok) {
    table.hidden = true;
    const detail = answer.body.errortype ? ` (${answer.body.errortype})` : "";
    status.textContent = `The jobs could not be listed: ${answer.body.message || "no answer"}${detail}`;
    return;
  }
  const jobs = answer.body.jobs;
  table.tBodies[0].replaceChildren(...jobs.map(jobRow));
  table.hidden = jobs.length === 0;
  const open = jobs.filter((job) => OPEN_JOB_STATES.has(job.state)).length;
  status.textContent = jobs.length === 0 ? "No jobs yet." : open ? `${open} unfinished; refreshing…` : "";
  if (open) jobsTimer = setTimeout(loadJobs, JOBS_REFRESH_MS);
}

// ---- the API key -----------------------------------------------------------------------------

function applyKey() {
  const key = keyInput.value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  loadModels();
  loadJobs();
}

$("key-button").addEventListener("click", applyKey);
keyInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    applyKey();
  }
});

keyInput.value = apiKey();
loadModels();
loadJobs();
