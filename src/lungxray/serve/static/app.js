// lungxray web page: upload X-rays to /v1/predict and show one card per image. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { maxUploadMb: 20, camAvailable: false, request: 0 };

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
    const response = await fetch("v1/model");  // relative: the page also works behind a path prefix
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

function renderBars(bars, probabilities, prediction) {
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

// One card per uploaded file, in the order chosen; filled in when its answer arrives.
function newCard(fileName) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  card.dataset.file = fileName;
  card.querySelector(".file").textContent = fileName;
  card.querySelector(".viewer").hidden = true;
  $("results").appendChild(card);
  return card;
}

function showView(card, images, mask, which) {
  const q = (sel) => card.querySelector(sel);
  if (!images[which]) return;
  q(".xray").src = images[which];
  q(".tab-outline").setAttribute("aria-selected", String(which === "outline"));
  q(".tab-cam").setAttribute("aria-selected", String(which === "cam"));
  q(".caption").textContent = which === "cam"
    ? "Grad-CAM for the predicted class: red = most influential on the network's output."
    : mask ? `Green: lung outline (${mask} mask) the model saw.` : "The X-ray as the model received it (no lung mask used).";
}

function cardError(card, message) {
  card.querySelector(".waiting").hidden = true;
  const box = card.querySelector(".card-error");
  box.textContent = message;
  box.hidden = false;
  card.classList.add("failed");
}

function renderCard(card, result) {
  const q = (sel) => card.querySelector(sel);
  const images = { outline: `data:image/png;base64,${result.overlay_png}` };
  if (result.cam_png) images.cam = `data:image/png;base64,${result.cam_png}`;
  q(".tab-outline").textContent = result.mask ? "X-ray + lung outline" : "X-ray";
  q(".tab-cam").disabled = !result.cam_png;
  q(".tab-outline").addEventListener("click", () => showView(card, images, result.mask, "outline"));
  q(".tab-cam").addEventListener("click", () => showView(card, images, result.mask, "cam"));
  const flagged = Boolean(result.ood && result.ood.flagged);
  // A flagged card shows no prediction, so it does not open on a heat map "for the predicted class".
  showView(card, images, result.mask, result.cam_png && !flagged ? "cam" : "outline");
  q(".viewer").hidden = false;
  q(".waiting").hidden = true;
  card.classList.toggle("flagged", flagged);
  if (flagged) {
    // A probability next to this warning would still be read as an answer: show the warning instead.
    q(".prediction").textContent = "none (see the warning)";
    q(".ood").textContent = "This image does not look like the frontal chest X-rays the model was trained on, "
      + "so no probability is shown: " + result.ood.reasons.join("; ");
    q(".ood").hidden = false;
    q(".probability-line").hidden = true;
    q(".bars").hidden = true;
  } else {
    q(".prediction").textContent = result.prediction;
    q(".probability").textContent = pct(result.probability);
    renderBars(q(".bars"), result.probabilities, result.prediction);
  }
  q(".answer").hidden = false;
}

async function classifyOne(file, card, cam, request) {
  if (file.size > state.maxUploadMb * 1024 * 1024) {
    cardError(card, `The file is too large: ${(file.size / 1048576).toFixed(1)} MB; the limit is ${state.maxUploadMb} MB.`);
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const response = await fetch(`v1/predict?overlay=true&cam=${cam}`, { method: "POST", body: form });
    if (request !== state.request) return; // a newer selection replaced this one
    if (!response.ok) {
      cardError(card, `Could not classify ${file.name}: ${await errorMessage(response)}`);
      return;
    }
    renderCard(card, await response.json());
  } catch (e) {
    if (request === state.request) cardError(card, `Could not reach the server: ${e.message}`);
  }
}

// Files go one at a time (the server bounds concurrent work anyway); cards fill in as answers arrive.
async function classify(fileList) {
  clearError();
  const files = Array.from(fileList || []);
  if (!files.length) return;
  const request = ++state.request;
  const cam = $("opt-cam").checked && state.camAvailable;
  $("results").replaceChildren();
  $("results").hidden = false;
  $("fineprint").hidden = false;
  const cards = files.map((f) => newCard(f.name));
  const busy = $("busy");
  busy.hidden = false;
  for (let i = 0; i < files.length; i++) {
    if (request !== state.request) return;
    busy.textContent = files.length > 1 ? `Classifying ${i + 1} of ${files.length}\u2026` : "Classifying\u2026";
    await classifyOne(files[i], cards[i], cam, request);
  }
  if (request === state.request) busy.hidden = true;
}

function setup() {
  const input = $("file");
  const zone = $("dropzone");
  input.addEventListener("change", () => classify(input.files));
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) classify(e.dataTransfer.files);
  });
  // A file dropped outside the zone would make the browser navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  loadModel();
}

setup();
