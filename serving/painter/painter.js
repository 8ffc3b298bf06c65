// The painter: paint class ids, get a photo back from the model's synthesize_png
// signatures. Page options: ?model=NAME (default: the model the serving spade-serve names at
// painter/models.json, else "spade") and ?api=/prefix (the path or URL in front of /v1/...
// when a reverse proxy serves TF Serving elsewhere).
//
// The label map is a Uint16Array of ids (labels.js); the canvas only ever shows it, through
// putImageData in the classes' colours. A read-only hook for tests and scripts:
// window.painter (see the end of this file).

import { ApiError, ServingApi, b64Output } from "./api.js";
import { History, LabelMap, discOffsets } from "./labels.js";
import {
  decodeGrayPng, encodeGrayPng, fromBase64, isGrayPng, pngHeader, toBase64,
} from "./png.js";

const BRUSH_SIZES = [1, 3, 5, 9, 15, 25, 41];
const DEFAULT_BRUSH = 9;
const LIVE_DELAY_MS = 350;
const UNKNOWN_COLOR = [255, 0, 255]; // ids of no class, as spade_tf.classes shows them
const MAX_SAFE_SEED = Number.MAX_SAFE_INTEGER; // exact in JSON numbers
const SIG_INFO = "model_info";
const SIG_PLAIN = "synthesize_png";
const SIG_SEEDED = "synthesize_png_seeded";
const SIG_STYLE = "synthesize_png_with_style";
// Scenes are painted over the sky, as in GauGAN (COCO-Stuff's is "sky-other"); never over
// don't-care, which the model saw only on thin unlabelled seams: it has no defined look.
const PREFERRED_BACKGROUND = ["sky", "sky-other"];
const PREFERRED_FIRST = ["grass", "road", "tree", "sea", "mountain"];
const PLACEHOLDER_NAMES = /^(unlabeled|unlabelled|other|background|void)$/i;

const params = new URLSearchParams(window.location.search);
const DEFAULT_MODEL = "spade"; // TF Serving's deploy files name it so
// spade-serve lists its models here (TF Serving has no such list: then the default).
const MODELS_URL = new URL("painter/models.json", window.location.href);
let modelName = params.get("model") || "";
const api = new ServingApi(params.get("api") || "", modelName);

/** The first model the server that served this page serves, or DEFAULT_MODEL. */
async function servedModel() {
  try {
    const answer = await fetch(MODELS_URL, { cache: "no-store" });
    const models = answer.ok ? (await answer.json()).models : null;
    if (Array.isArray(models) && typeof models[0] === "string") return models[0];
  } catch (error) {
    // not spade-serve (a static copy in front of TF Serving): the default name
  }
  return DEFAULT_MODEL;
}

const $ = (id) => document.getElementById(id);
const el = {
  status: $("model-status"), canvas: $("labels"), frame: $("label-frame"),
  cursor: $("brush-cursor"), cursorInfo: $("cursor-info"), sizes: $("sizes"),
  sizeValue: $("size-value"), undo: $("undo"), redo: $("redo"), clear: $("clear"),
  eraser: $("eraser-class"), classCount: $("class-count"), current: $("current-class"),
  search: $("class-search"), palette: $("palette"), open: $("open-file"),
  saveLabels: $("save-labels"), saveImage: $("save-image"), live: $("live"),
  synthesize: $("synthesize"), styleBar: $("style-controls"), seed: $("seed"),
  randomSeed: $("random-seed"), photoModeLabel: $("photo-mode-label"),
  photoButton: $("photo-button"), styleDivider: $("style-divider"),
  styleFile: $("style-file"), styleThumb: $("style-thumb"),
  styleName: $("style-name"), result: $("result"), resultFrame: $("result-frame"),
  placeholder: $("result-placeholder"), spinner: $("spinner"), timing: $("timing"),
  message: $("message"), messageText: $("message-text"), messageClose: $("message-close"),
};
const ctx = el.canvas.getContext("2d");

const state = {
  ready: false,
  info: null,
  classes: [], // [{id, name, color}], the don't-care entry last
  byId: new Map(),
  map: null,
  image: null, // ImageData the map is drawn into
  lut: new Uint32Array(65536),
  history: new History(),
  tool: "brush",
  paintTool: "brush", // where the eyedropper goes back to
  current: 0,
  eraser: 0,
  brushSize: DEFAULT_BRUSH,
  offsets: discOffsets(DEFAULT_BRUSH),
  stroke: null,
  scale: 1,
  drawQueued: false,
  liveTimer: 0,
  seq: 0, // requests started; only the answer to the latest one is shown
  completed: 0, // requests answered and shown (images or errors)
  controller: null,
  busy: false,
  lastImage: null,
  lastImageUrl: null,
  lastRequest: null,
  lastMs: null,
  lastError: null,
  seed: randomSeed(),
  styleMode: "seed",
  stylePhoto: null, // {b64, name}
  signatures: new Set(),
};

// -- messages ---------------------------------------------------------------------------

function showMessage(text, kind = "info") {
  el.messageText.textContent = text;
  el.message.className = `message ${kind}`;
  el.message.hidden = false;
  el.message.setAttribute("role", kind === "error" ? "alert" : "status");
  if (kind === "error") state.lastError = text;
}

function clearMessage() {
  el.message.hidden = true;
  el.messageText.textContent = "";
}

function errorText(error) {
  if (error instanceof ApiError) return error.message;
  if (!error || !error.message) return String(error);
  return error.name && error.name !== "Error" ? `${error.name}: ${error.message}` : error.message;
}

// -- classes and colours ----------------------------------------------------------------

function rgb(color) {
  return `rgb(${color[0]}, ${color[1]}, ${color[2]})`;
}

function hex(color) {
  return `#${color.map((value) => value.toString(16).padStart(2, "0")).join("")}`;
}

function packColor(color) {
  // ImageData is RGBA in memory; every browser runs little-endian, so ABGR as a Uint32.
  return ((255 << 24) | (color[2] << 16) | (color[1] << 8) | color[0]) >>> 0;
}

function loadClasses(info) {
  const table = info.classes || {};
  const classes = Array.isArray(table.classes) ? table.classes : [];
  const numClasses = info.num_classes;
  const entries = [];
  for (let id = 0; id < numClasses; id++) {
    const entry = classes.find((item) => item.id === id);
    entries.push({
      id, name: entry && entry.name ? String(entry.name) : `class ${id}`,
      color: entry && Array.isArray(entry.color) ? entry.color.map(Number) : [128, 128, 128],
      dontcare: false,
    });
  }
  const dontcare = table.dontcare || (info.use_dontcare_label
    ? { id: info.dontcare_label, name: "don't care", color: [0, 0, 0] } : null);
  if (dontcare && Number.isInteger(dontcare.id)) {
    entries.push({ id: dontcare.id, name: dontcare.name || "don't care",
      color: dontcare.color || [0, 0, 0], dontcare: true });
  }
  state.classes = entries;
  state.byId = new Map(entries.map((entry) => [entry.id, entry]));
  state.lut.fill(packColor(UNKNOWN_COLOR));
  for (const entry of entries) state.lut[entry.id] = packColor(entry.color);
}

function className(id) {
  const entry = state.byId.get(id);
  return entry ? entry.name : "not a class";
}

function findByName(names) {
  for (const name of names) {
    const entry = state.classes.find((item) => item.name.toLowerCase() === name && !item.dontcare);
    if (entry) return entry.id;
  }
  return null;
}

function buildPalette() {
  el.palette.textContent = "";
  el.eraser.textContent = "";
  for (const entry of state.classes) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "class-item";
    button.dataset.id = String(entry.id);
    button.setAttribute("role", "option");
    button.title = `${entry.name} (id ${entry.id}, ${hex(entry.color)})`;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = rgb(entry.color);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.name;
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = String(entry.id);
    button.append(swatch, name, id);
    item.append(button);
    el.palette.append(item);

    const option = document.createElement("option");
    option.value = String(entry.id);
    option.textContent = `${entry.id} · ${entry.name}`;
    el.eraser.append(option);
  }
  const count = state.classes.filter((entry) => !entry.dontcare).length;
  el.classCount.textContent = String(count);
}

function filterPalette() {
  const query = el.search.value.trim().toLowerCase();
  const asId = /^\d+$/.test(query) ? Number(query) : null;
  let shown = 0;
  for (const item of el.palette.children) {
    const entry = state.byId.get(Number(item.firstChild.dataset.id));
    const match = !query || entry.name.toLowerCase().includes(query) || entry.id === asId;
    item.hidden = !match;
    if (match) shown++;
  }
  el.palette.dataset.empty = shown ? "" : "No class matches.";
}

function firstShownClass() {
  for (const item of el.palette.children) {
    if (!item.hidden) return Number(item.firstChild.dataset.id);
  }
  return null;
}

function selectClass(id) {
  const entry = state.byId.get(id);
  if (!entry) return;
  state.current = id;
  for (const button of el.palette.querySelectorAll(".class-item")) {
    const selected = Number(button.dataset.id) === id;
    button.classList.toggle("selected", selected);
    button.setAttribute("aria-selected", selected ? "true" : "false");
  }
  el.current.querySelector(".swatch").style.background = rgb(entry.color);
  el.current.querySelector(".name").textContent = entry.name;
  el.current.querySelector(".id").textContent = `id ${entry.id}`;
  const selected = el.palette.querySelector(".class-item.selected");
  if (selected && !selected.parentElement.hidden) selected.scrollIntoView({ block: "nearest" });
}

function setEraser(id) {
  if (!state.byId.has(id)) return;
  state.eraser = id;
  el.eraser.value = String(id);
}

// -- drawing ----------------------------------------------------------------------------

function draw() {
  state.drawQueued = false;
  const { map, image, lut } = state;
  if (!map) return;
  const pixels = new Uint32Array(image.data.buffer);
  const ids = map.ids;
  for (let i = 0; i < ids.length; i++) pixels[i] = lut[ids[i]];
  ctx.putImageData(image, 0, 0);
}

function queueDraw() {
  if (state.drawQueued) return;
  state.drawQueued = true;
  requestAnimationFrame(draw);
}

function layout() {
  if (!state.map) return;
  const { width, height } = state.map;
  const stage = document.querySelector(".stage");
  const gap = 24;
  const caption = 30;
  const room = stage.clientWidth - 4;
  const top = stage.getBoundingClientRect().top + window.scrollY;
  const free = Math.max(240, window.innerHeight - top - 64) - caption;
  // Side by side, or (wide maps, narrow windows) the result below the map: the larger.
  const beside = Math.min((room - gap) / 2 / width, free / height);
  const below = Math.min(room / width, (free - gap - caption) / 2 / height);
  const stacked = below > beside * 1.05;
  stage.classList.toggle("stacked", stacked);
  let scale = stacked ? below : beside;
  scale = scale >= 1 ? Math.floor(scale * 4) / 4 : scale; // tidy factors above 1x
  scale = Math.max(scale, 0.25);
  state.scale = scale;
  const cssWidth = `${Math.round(width * scale)}px`;
  const cssHeight = `${Math.round(height * scale)}px`;
  for (const node of [el.canvas, el.result, el.placeholder]) {
    node.style.width = cssWidth;
    node.style.height = cssHeight;
  }
  el.resultFrame.style.minWidth = cssWidth;
  el.resultFrame.style.minHeight = cssHeight;
}

function markChanged() {
  queueDraw();
  scheduleLive();
}

function updateHistoryButtons() {
  el.undo.disabled = !state.history.canUndo;
  el.redo.disabled = !state.history.canRedo;
}

function pushHistory(snapshot) {
  state.history.push(snapshot);
  updateHistoryButtons();
}

function undo() {
  if (!state.ready || state.stroke) return;
  if (state.history.undo(state.map)) markChanged();
  updateHistoryButtons();
}

function redo() {
  if (!state.ready || state.stroke) return;
  if (state.history.redo(state.map)) markChanged();
  updateHistoryButtons();
}

function clearMap() {
  if (!state.ready) return;
  const before = state.map.snapshot();
  state.map.clear(state.eraser);
  if (!state.map.equals(before)) {
    pushHistory(before);
    markChanged();
  }
}

// -- tools ------------------------------------------------------------------------------

function setTool(tool) {
  state.tool = tool;
  if (tool === "brush" || tool === "eraser") state.paintTool = tool;
  for (const button of document.querySelectorAll(".tool")) {
    const active = button.dataset.tool === tool;
    button.classList.toggle("active", active);
    button.setAttribute("aria-pressed", active ? "true" : "false");
  }
  el.canvas.dataset.tool = tool;
}

function setBrushSize(size) {
  state.brushSize = size;
  state.offsets = discOffsets(size);
  for (const button of el.sizes.children) {
    button.classList.toggle("active", Number(button.dataset.size) === size);
  }
  el.sizeValue.textContent = `${size} px`;
}

function buildSizes() {
  for (const size of BRUSH_SIZES) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "size";
    button.dataset.size = String(size);
    button.title = `${size} px`;
    const dot = document.createElement("span");
    const shown = 3 + Math.round(Math.sqrt(size) * 3.2);
    dot.style.width = dot.style.height = `${shown}px`;
    button.append(dot);
    button.addEventListener("click", () => setBrushSize(size));
    el.sizes.append(button);
  }
}

function stepBrush(direction) {
  const index = BRUSH_SIZES.indexOf(state.brushSize);
  const next = Math.min(BRUSH_SIZES.length - 1, Math.max(0, index + direction));
  setBrushSize(BRUSH_SIZES[next]);
}

function pixelAt(event) {
  const rect = el.canvas.getBoundingClientRect();
  return {
    x: Math.floor(((event.clientX - rect.left) / rect.width) * state.map.width),
    y: Math.floor(((event.clientY - rect.top) / rect.height) * state.map.height),
  };
}

function showCursor(event) {
  if (!state.map) return;
  const point = pixelAt(event);
  const { map, scale } = state;
  if (!map.inside(point.x, point.y)) {
    el.cursor.hidden = true;
    el.cursorInfo.textContent = "";
    return;
  }
  const id = map.get(point.x, point.y);
  el.cursorInfo.textContent = `${point.x}, ${point.y} · ${className(id)} (${id})`;
  const painting = state.tool === "brush" || state.tool === "eraser";
  const size = painting ? state.brushSize : 1;
  const low = painting ? -Math.floor((size - 1) / 2) : 0;
  el.cursor.hidden = false;
  el.cursor.classList.toggle("square", !painting);
  el.cursor.style.width = el.cursor.style.height = `${size * scale}px`;
  el.cursor.style.left = `${el.canvas.offsetLeft + (point.x + low) * scale}px`;
  el.cursor.style.top = `${el.canvas.offsetTop + (point.y + low) * scale}px`;
}

function onPointerDown(event) {
  if (!state.ready || state.stroke) return;
  if (event.pointerType === "mouse" && event.button !== 0) return;
  event.preventDefault();
  const { x, y } = pixelAt(event);
  const { map } = state;
  if (state.tool === "brush" || state.tool === "eraser") {
    el.canvas.setPointerCapture(event.pointerId);
    const id = state.tool === "eraser" ? state.eraser : state.current;
    state.stroke = { pointerId: event.pointerId, x, y, id, before: map.snapshot() };
    map.stamp(x, y, state.offsets, id);
    markChanged();
  } else if (state.tool === "fill") {
    const before = map.snapshot();
    if (map.fill(x, y, state.current)) {
      pushHistory(before);
      markChanged();
    }
  } else if (state.tool === "eyedropper") {
    const id = map.get(x, y);
    if (state.byId.has(id)) {
      selectClass(id);
      setTool(state.paintTool === "eraser" ? "brush" : state.paintTool);
    } else if (id >= 0) {
      showMessage(`Id ${id} under the pointer is not a class of this model.`, "warning");
    }
  }
}

function onPointerMove(event) {
  showCursor(event);
  const { stroke, map } = state;
  if (!stroke || event.pointerId !== stroke.pointerId) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const sample of events.length ? events : [event]) {
    const { x, y } = pixelAt(sample);
    if (x === stroke.x && y === stroke.y) continue;
    map.line(stroke.x, stroke.y, x, y, state.offsets, stroke.id);
    stroke.x = x;
    stroke.y = y;
  }
  markChanged();
}

function endStroke(event) {
  const { stroke } = state;
  if (!stroke || (event && event.pointerId !== stroke.pointerId)) return;
  state.stroke = null;
  if (!state.map.equals(stroke.before)) pushHistory(stroke.before);
  if (el.canvas.hasPointerCapture(stroke.pointerId)) {
    el.canvas.releasePointerCapture(stroke.pointerId);
  }
  markChanged();
}

// -- synthesis --------------------------------------------------------------------------

function randomSeed() {
  const values = new Uint32Array(1);
  crypto.getRandomValues(values);
  return values[0] & 0x7fffffff;
}

function parseSeed() {
  const text = el.seed.value.trim();
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(Number(text))
      || Math.abs(Number(text)) > MAX_SAFE_SEED) {
    throw new ApiError(`Seed "${text}": expected a whole number (at most ${MAX_SAFE_SEED}).`);
  }
  return Number(text);
}

function useVae() {
  return Boolean(state.info && state.info.use_vae);
}

function requestFor(labelB64) {
  const inputs = { label_png_bytes: [{ b64: labelB64 }] };
  // Every painted region is its own instance: the label map doubles as the instance map.
  if (state.info.use_instance_edges) inputs.instance_png_bytes = [{ b64: labelB64 }];
  if (useVae() && state.styleMode === "photo") {
    if (!state.stylePhoto) throw new ApiError("Choose a style photo first (or use a seed).");
    inputs.style_png_bytes = [{ b64: state.stylePhoto.b64 }];
    return { signature: SIG_STYLE, inputs, seed: null };
  }
  if (useVae() && state.signatures.has(SIG_SEEDED)) {
    const seed = parseSeed();
    inputs.seed = [seed];
    return { signature: SIG_SEEDED, inputs, seed };
  }
  return { signature: SIG_PLAIN, inputs, seed: null };
}

function setBusy(busy) {
  state.busy = busy;
  el.spinner.hidden = !busy;
  el.resultFrame.classList.toggle("busy", busy);
}

async function synthesize() {
  if (!state.ready) return;
  clearTimeout(state.liveTimer);
  const seq = ++state.seq;
  if (state.controller) state.controller.abort(); // the older request is superseded
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  try {
    const png = await encodeGrayPng(state.map.ids, state.map.width, state.map.height);
    const labelB64 = toBase64(png);
    const request = requestFor(labelB64);
    const started = performance.now();
    const answer = await api.predict(request.signature, request.inputs, controller.signal);
    const elapsed = performance.now() - started;
    if (seq !== state.seq) return;
    const imageB64 = b64Output(answer, "image_png_bytes");
    state.lastRequest = { signature: request.signature, seed: request.seed, labelPng: labelB64 };
    showResult(imageB64, elapsed, request);
  } catch (error) {
    if (seq !== state.seq) return; // an aborted, superseded request
    showMessage(`Synthesis failed: ${errorText(error)}`, "error");
    el.timing.textContent = "failed";
  } finally {
    if (seq === state.seq) {
      state.controller = null;
      state.completed++;
      setBusy(false);
    }
  }
}

function showResult(imageB64, elapsed, request) {
  state.lastImage = imageB64;
  state.lastMs = Math.round(elapsed);
  state.lastError = null;
  if (state.lastImageUrl) URL.revokeObjectURL(state.lastImageUrl);
  state.lastImageUrl = URL.createObjectURL(new Blob([fromBase64(imageB64)], { type: "image/png" }));
  el.result.src = state.lastImageUrl;
  el.result.hidden = false;
  el.placeholder.hidden = true;
  el.saveImage.disabled = false;
  const style = request.signature === SIG_STYLE ? " · photo style"
    : request.seed !== null ? ` · seed ${request.seed}` : "";
  el.timing.textContent = `${state.lastMs} ms${style}`;
  if (!el.message.hidden && el.message.classList.contains("error")) clearMessage();
}

function scheduleLive() {
  if (!el.live.checked || !state.ready) return;
  clearTimeout(state.liveTimer);
  state.liveTimer = setTimeout(synthesize, LIVE_DELAY_MS);
}

// -- files ------------------------------------------------------------------------------

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function saveLabels() {
  if (!state.ready) return;
  const png = await encodeGrayPng(state.map.ids, state.map.width, state.map.height);
  download(new Blob([png], { type: "image/png" }), `${modelName}-labels.png`);
}

function saveImage() {
  if (!state.lastImage) return;
  const suffix = state.lastRequest && state.lastRequest.seed !== null
    ? `-seed${state.lastRequest.seed}` : "";
  download(new Blob([fromBase64(state.lastImage)], { type: "image/png" }),
    `${modelName}${suffix}.png`);
}

function resizeNearest(ids, width, height, toWidth, toHeight) {
  const out = new Uint16Array(toWidth * toHeight);
  for (let y = 0; y < toHeight; y++) {
    const sy = Math.min(height - 1, Math.floor(((y + 0.5) * height) / toHeight));
    for (let x = 0; x < toWidth; x++) {
      const sx = Math.min(width - 1, Math.floor(((x + 0.5) * width) / toWidth));
      out[y * toWidth + x] = ids[sy * width + sx];
    }
  }
  return out;
}

async function colorMapIds(file, notes) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {
      colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "none",
    });
  } catch (error) {
    throw new Error(`the file cannot be read as an image (${error.message || error})`);
  }
  const { width, height } = bitmap;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const scratch = canvas.getContext("2d", { willReadFrequently: true });
  scratch.imageSmoothingEnabled = false;
  scratch.drawImage(bitmap, 0, 0); // same size: a copy, no resampling
  bitmap.close();
  const data = scratch.getImageData(0, 0, width, height).data;
  const byColor = new Map(state.classes.map((entry) => [
    (entry.color[0] << 16) | (entry.color[1] << 8) | entry.color[2], entry.id]));
  const ids = new Uint16Array(width * height);
  const unknown = new Map();
  let gray = true;
  for (let i = 0, p = 0; i < ids.length; i++, p += 4) {
    const r = data[p];
    const g = data[p + 1];
    const b = data[p + 2];
    if (r !== g || g !== b) gray = false;
    const key = (r << 16) | (g << 8) | b;
    const id = byColor.get(key);
    if (id === undefined) {
      unknown.set(key, (unknown.get(key) || 0) + 1);
      ids[i] = state.eraser;
    } else {
      ids[i] = id;
    }
  }
  if (unknown.size && gray) {
    // An RGB file whose pixels are all gray: ids saved as colour (R = G = B = id).
    for (let i = 0; i < ids.length; i++) ids[i] = data[i * 4];
    notes.push("read as ids (a colour PNG whose pixels are all gray)");
    return { width, height, ids };
  }
  if (unknown.size) {
    const total = [...unknown.values()].reduce((sum, count) => sum + count, 0);
    const listed = [...unknown.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6)
      .map(([key, count]) => `#${key.toString(16).padStart(6, "0")} (${count} px)`);
    notes.push(`${unknown.size} colour${unknown.size > 1 ? "s" : ""} of no class `
      + `(${total} px, painted as "${className(state.eraser)}"): ${listed.join(", ")}`
      + `${unknown.size > listed.length ? ", …" : ""}`);
  } else {
    notes.push("read in the classes' colours");
  }
  return { width, height, ids };
}

async function openLabels(file) {
  if (!state.ready || !file) return;
  const notes = [];
  let decoded;
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const header = pngHeader(bytes);
    if (header && isGrayPng(header)) {
      decoded = await decodeGrayPng(bytes);
      notes.push(`read as ids (${decoded.bitDepth}-bit grayscale)`);
    } else {
      decoded = await colorMapIds(file, notes);
    }
  } catch (error) {
    showMessage(`Cannot open ${file.name}: ${errorText(error)}`, "error");
    return;
  }
  const { width, height } = state.map;
  let { ids } = decoded;
  if (decoded.width !== width || decoded.height !== height) {
    ids = resizeNearest(ids, decoded.width, decoded.height, width, height);
    notes.push(`resized from ${decoded.width}×${decoded.height} to the model's `
      + `${width}×${height} (nearest neighbour)`);
  }
  const strange = new Set();
  for (const id of new Set(ids)) if (!state.byId.has(id)) strange.add(id);
  if (strange.size) {
    const list = [...strange].sort((a, b) => a - b);
    notes.push("ids of no class (shown magenta, refused by the model): "
      + `${list.slice(0, 10).join(", ")}${list.length > 10 ? ", …" : ""}`);
  }
  pushHistory(state.map.snapshot());
  state.map.restore(ids);
  markChanged();
  showMessage(`Opened ${file.name}: ${notes.join("; ")}.`, strange.size || notes.some(
    (note) => note.includes("of no class")) ? "warning" : "info");
}

async function openStylePhoto(file) {
  if (!file) return;
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    state.stylePhoto = { b64: toBase64(bytes), name: file.name };
  } catch (error) {
    showMessage(`Cannot read ${file.name}: ${errorText(error)}`, "error");
    return;
  }
  if (el.styleThumb.src) URL.revokeObjectURL(el.styleThumb.src);
  el.styleThumb.src = URL.createObjectURL(file);
  el.styleThumb.hidden = false;
  el.styleName.textContent = file.name;
  setStyleMode("photo");
  if (state.ready) synthesize();
}

function setStyleMode(mode) {
  state.styleMode = mode;
  for (const radio of document.querySelectorAll('input[name="style-mode"]')) {
    radio.checked = radio.value === mode;
  }
  el.seed.disabled = mode !== "seed";
}

// -- start ------------------------------------------------------------------------------

function describeStatus(status) {
  const versions = (status && status.model_version_status) || [];
  const available = versions.find((entry) => entry.state === "AVAILABLE");
  if (available) return { ok: true, text: `version ${available.version}` };
  const states = versions.map((entry) => `${entry.version}: ${entry.state}`).join(", ");
  return { ok: false, text: states || "no versions" };
}

function checkInfo(info) {
  const size = info && info.image_size;
  const positive = (value) => Number.isInteger(value) && value > 0;
  if (!Array.isArray(size) || size.length !== 2 || !size.every(positive)) {
    throw new ApiError(`model_info: image_size ${JSON.stringify(size)} is not [height, width]`);
  }
  if (!Number.isInteger(info.num_classes) || info.num_classes < 1) {
    throw new ApiError(`model_info: num_classes ${JSON.stringify(info.num_classes)}`);
  }
}

async function start() {
  if (!modelName) modelName = await servedModel();
  api.model = modelName;
  const where = api.base || window.location.origin;
  el.status.textContent = `Connecting to ${modelName}…`;
  let version;
  try {
    const status = describeStatus(await api.status());
    if (!status.ok) throw new ApiError(`model "${modelName}" is not available (${status.text})`);
    version = status.text;
    const info = await api.modelInfo();
    checkInfo(info);
    state.info = info;
  } catch (error) {
    el.status.textContent = `${modelName}: not available`;
    el.status.classList.add("bad");
    let text = errorText(error);
    if (/model_info/.test(text) && /not found/i.test(text)) {
      text += " (this export has no model_info signature: export the model again with this "
        + "version of spade-export)";
    }
    showMessage(`Cannot use model "${modelName}" at ${where}: ${text}`, "error");
    return;
  }
  const info = state.info;
  const [height, width] = info.image_size;
  state.signatures = new Set(info.signatures || []);
  loadClasses(info);
  buildPalette();
  setEraser(findByName(PREFERRED_BACKGROUND) ?? state.classes.find((entry) => !entry.dontcare
    && PLACEHOLDER_NAMES.test(entry.name))?.id ?? 0); // no sky: a "background", "other" ...
  const first = findByName(PREFERRED_FIRST) ?? state.classes.find((entry) => !entry.dontcare
    && entry.id !== state.eraser && !PLACEHOLDER_NAMES.test(entry.name))?.id;
  selectClass(first ?? 0);
  state.map = new LabelMap(width, height, state.eraser);
  el.canvas.width = width;
  el.canvas.height = height;
  state.image = ctx.createImageData(width, height);

  const features = [`${width}×${height}`, `${info.num_classes} classes`];
  if (info.use_vae) features.push("VAE");
  if (info.use_instance_edges) features.push("instance edges");
  el.status.textContent = `${modelName} · ${version} · ${features.join(" · ")}`;
  el.status.title = info.classes && info.classes.source ? `classes: ${info.classes.source}` : "";
  el.status.classList.add("ok");

  if (useVae()) {
    el.styleBar.hidden = false;
    el.seed.value = String(state.seed);
    const seeded = state.signatures.has(SIG_SEEDED);
    const styled = state.signatures.has(SIG_STYLE);
    for (const node of [el.seed, el.randomSeed]) node.disabled = !seeded;
    el.photoModeLabel.hidden = el.photoButton.hidden = !styled;
    el.styleDivider.hidden = !seeded || !styled;
    setStyleMode(seeded ? "seed" : "photo");
    if (!seeded && !styled) el.styleBar.hidden = true;
  }
  if (!state.signatures.has(SIG_PLAIN) && state.signatures.size) {
    showMessage(`This export has no ${SIG_PLAIN} signature; export it again.`, "error");
  }
  layout();
  draw();
  updateHistoryButtons();
  el.synthesize.disabled = false;
  state.ready = true;
  document.body.classList.add("ready");
}

function bind() {
  for (const button of document.querySelectorAll(".tool")) {
    button.addEventListener("click", () => setTool(button.dataset.tool));
  }
  el.undo.addEventListener("click", undo);
  el.redo.addEventListener("click", redo);
  el.clear.addEventListener("click", clearMap);
  el.eraser.addEventListener("change", () => setEraser(Number(el.eraser.value)));
  el.palette.addEventListener("click", (event) => {
    const button = event.target.closest(".class-item");
    if (button) selectClass(Number(button.dataset.id));
  });
  el.search.addEventListener("input", filterPalette);
  el.search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      const id = firstShownClass();
      if (id !== null) selectClass(id);
    } else if (event.key === "Escape") {
      el.search.value = "";
      filterPalette();
    }
  });

  el.canvas.addEventListener("pointerdown", onPointerDown);
  el.canvas.addEventListener("pointermove", onPointerMove);
  el.canvas.addEventListener("pointerup", endStroke);
  el.canvas.addEventListener("pointercancel", endStroke);
  el.canvas.addEventListener("lostpointercapture", endStroke);
  el.canvas.addEventListener("pointerleave", () => {
    el.cursor.hidden = true;
    el.cursorInfo.textContent = "";
  });
  el.canvas.addEventListener("contextmenu", (event) => event.preventDefault());

  el.synthesize.addEventListener("click", synthesize);
  el.live.addEventListener("change", () => {
    if (el.live.checked) synthesize();
  });
  el.open.addEventListener("change", () => {
    openLabels(el.open.files[0]);
    el.open.value = "";
  });
  el.saveLabels.addEventListener("click", saveLabels);
  el.saveImage.addEventListener("click", saveImage);
  el.seed.addEventListener("input", scheduleLive);
  el.seed.addEventListener("keydown", (event) => {
    if (event.key === "Enter") synthesize();
  });
  el.randomSeed.addEventListener("click", () => {
    state.seed = randomSeed();
    el.seed.value = String(state.seed);
    setStyleMode("seed");
    synthesize();
  });
  el.styleFile.addEventListener("change", () => {
    openStylePhoto(el.styleFile.files[0]);
    el.styleFile.value = "";
  });
  for (const radio of document.querySelectorAll('input[name="style-mode"]')) {
    radio.addEventListener("change", () => {
      setStyleMode(radio.value);
      scheduleLive();
    });
  }
  el.messageClose.addEventListener("click", clearMessage);
  window.addEventListener("resize", layout);

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLElement && (target.isContentEditable
      || target.tagName === "TEXTAREA" || target.tagName === "SELECT"
      || (target.tagName === "INPUT" && !["checkbox", "radio", "button", "file"]
        .includes(target.type)));
    if (typing) return;
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && !event.altKey) {
      if (key === "z") {
        event.preventDefault();
        if (event.shiftKey) redo();
        else undo();
      } else if (key === "y") {
        event.preventDefault();
        redo();
      }
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const tools = { b: "brush", f: "fill", e: "eraser", i: "eyedropper" };
    if (tools[key]) setTool(tools[key]);
    else if (key === "[") stepBrush(-1);
    else if (key === "]") stepBrush(1);
  });
}

buildSizes();
setBrushSize(DEFAULT_BRUSH);
setTool("brush");
bind();

// A read-only view for tests and scripts.
window.painter = Object.freeze({
  get width() {
    return state.map ? state.map.width : 0;
  },
  get height() {
    return state.map ? state.map.height : 0;
  },
  /** The label map: width * height class ids, row-major. */
  labels: () => (state.map ? Array.from(state.map.ids) : []),
  /** The image shown, as base64 PNG (null before the first one). */
  lastImage: () => state.lastImage,
  /** The request behind the image shown: {signature, seed, labelPng (base64)}. */
  lastRequest: () => (state.lastRequest ? { ...state.lastRequest } : null),
  /** The model's metadata (model_info), a copy. */
  info: () => (state.info ? JSON.parse(JSON.stringify(state.info)) : null),
  state: () => ({
    ready: state.ready, busy: state.busy, tool: state.tool, current: state.current,
    eraser: state.eraser, brushSize: state.brushSize, scale: state.scale,
    requests: state.seq, completed: state.completed, lastMs: state.lastMs,
    lastError: state.lastError, canUndo: state.history.canUndo,
    canRedo: state.history.canRedo, styleMode: state.styleMode,
    seed: el.seed.value === "" ? null : el.seed.value,
  }),
});

start().catch((error) => showMessage(`The painter failed to start: ${errorText(error)}`, "error"));
