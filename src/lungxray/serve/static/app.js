// lungxray web page: upload one X-ray to /v1/predict and show the answer. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { maxUploadMb: 20, camAvailable: false, request: 0, images: {} };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// A readable message from a failed response: our API always answers {"detail": "..."}; anything else
// (a proxy's HTML page, say) is summarised rather than shown raw.
async function errorMessage(response) {
  let detail = "";
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (e) {
    detail = response.statusText || "unexpected answer from the server";
  }
  const what = {
    413: "The file is too large.",
    415: "It is not an X-ray image the model can read.",
    422: "The image could not be read.",
    503: "The server cannot classify this image right now.",
  }[response.status] || `The server answered ${response.status}.`;
  return `${what} ${detail}`;
}

async function loadModel() {
  try {
    const response = await fetch("/v1/model");
    if (!response.ok) throw new Error(await errorMessage(response));
    const card = await response.json();
    state.maxUploadMb = card.max_upload_mb;
    state.camAvailable = Boolean(card.cam_available);
    const label = `${card.name} ${card.version || ""}`.trim();
    $("model").textContent = `Model: ${label} (${card.runtime}) \u00b7 ${card.classes.join(", ")}`;
    $("footer-model").textContent = `model ${label}`;
    const cam = $("opt-cam");
    cam.checked = state.camAvailable;
    cam.disabled = !state.camAvailable;
    if (!state.camAvailable) cam.parentElement.title = "this model has no Grad-CAM layer";
  } catch (e) {
    $("model").textContent = "Model: unavailable";
    showError(`Could not reach the model: ${e.message}`);
  }
}

function pct(p) {
  return `${(100 * p).toFixed(1)}%`;
}

function renderBars(probabilities, prediction) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const [name, p] of Object.entries(probabilities)) {
    const row = document.createElement("div");
    row.className = "bar-row" + (name === prediction ? " top" : "");
    row.dataset.class = name;
    const label = document.createElement("span");
    label.className = "bar-name";
    label.textContent = name;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.display = "block";
    fill.style.width = `${Math.max(0, Math.min(100, 100 * p)).toFixed(1)}%`;
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = pct(p);
    row.append(label, track, value);
    bars.appendChild(row);
  }
}

function showView(which) {
  const src = state.images[which];
  if (!src) return;
  $("xray").src = src;
  $("tab-outline").setAttribute("aria-selected", String(which === "outline"));
  $("tab-cam").setAttribute("aria-selected", String(which === "cam"));
  $("caption").textContent = which === "cam"
    ? "Grad-CAM for the predicted class: red = most influential on the network's output."
    : state.mask ? `Green: lung outline (${state.mask} mask) the model saw.` : "The X-ray as the model received it (no lung mask used).";
}

function renderResult(result, fileName) {
  state.images = { outline: `data:image/png;base64,${result.overlay_png}` };
  if (result.cam_png) state.images.cam = `data:image/png;base64,${result.cam_png}`;
  state.mask = result.mask;
  $("tab-outline").textContent = result.mask ? "X-ray + lung outline" : "X-ray";
  $("tab-cam").disabled = !result.cam_png;
  showView(result.cam_png ? "cam" : "outline");
  $("filename").textContent = fileName;
  $("prediction").textContent = result.prediction;
  $("probability").textContent = `(${pct(result.probability)})`;
  renderBars(result.probabilities, result.prediction);
  const ood = $("ood");
  if (result.ood && result.ood.flagged) {
    ood.textContent = "This image does not look like the frontal chest X-rays the model was trained on; "
      + "its prediction is not meaningful: " + result.ood.reasons.join("; ");
    ood.hidden = false;
  } else {
    ood.hidden = true;
  }
  $("result").hidden = false;
}

async function classify(file) {
  clearError();
  if (!file) return;
  if (file.size > state.maxUploadMb * 1024 * 1024) {
    showError(`The file is too large: ${(file.size / 1048576).toFixed(1)} MB; the limit is ${state.maxUploadMb} MB.`);
    return;
  }
  const request = ++state.request;
  const form = new FormData();
  form.append("file", file, file.name);
  const cam = $("opt-cam").checked && state.camAvailable;
  $("busy").hidden = false;
  try {
    const response = await fetch(`/v1/predict?overlay=true&cam=${cam}`, { method: "POST", body: form });
    if (request !== state.request) return; // a newer upload has started
    if (!response.ok) {
      $("result").hidden = true;
      showError(`Could not classify ${file.name}: ${await errorMessage(response)}`);
      return;
    }
    renderResult(await response.json(), file.name);
  } catch (e) {
    if (request === state.request) showError(`Could not reach the server: ${e.message}`);
  } finally {
    if (request === state.request) $("busy").hidden = true;
  }
}

function setup() {
  const input = $("file");
  const zone = $("dropzone");
  input.addEventListener("change", () => classify(input.files[0]));
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) classify(e.dataTransfer.files[0]);
  });
  // A file dropped outside the zone would make the browser navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  $("tab-outline").addEventListener("click", () => showView("outline"));
  $("tab-cam").addEventListener("click", () => showView("cam"));
  loadModel();
}

setup();
