// convlens live page: draw, pick or upload an image; watch every map of every layer respond.
// Plain modern JS, no build step. The server does all the model work; this file draws.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  run: null, info: null, last: null, cmap: "gray", lut: null,
  inflight: false, dirty: false, pendingSince: null,   // one request at a time; strokes coalesce
  penDown: false,  // the pen is on the pad: frames sent meanwhile leave out the attribution overlay
  pinned: null, hovered: null, details: new Map(),
  beside: null,  // a result kept to compare with: its maps are drawn beside the live ones
  asked: 0, answered: 0,  // tickets of the newest image request sent, and of the newest one shown
};
// Stroke-to-maps latencies in ms, and where they went, read by the latency bench and the browser tests.
window.convlens = { latencies: [], timings: [], updates: 0, stale: 0 };
window.convlensIdle = () => !state.inflight && !state.dirty;

// ---------- server ----------
async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}
// An image's answer, or null when a newer request's answer has been shown already. Answers can arrive out of
// order (each request has its own connection, and the server batches them): a late older one is dropped.
async function newest(path, options) {
  const ticket = ++state.asked;
  const outcome = await api(path, options).then((result) => ({ result }), (error) => ({ error }));
  if (ticket < state.answered) {
    window.convlens.stale++;
    return null;
  }
  state.answered = ticket;
  if (outcome.error) throw outcome.error;
  return outcome.result;
}
const runPath = (suffix) => `/api/runs/${encodeURIComponent(state.run)}${suffix}`;

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// ---------- colour maps ----------
const ANCHORS = {
  gray: [[0, 0, 0], [255, 255, 255]],
  viridis: [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
  jet: [[0, 0, 131], [0, 60, 255], [0, 255, 255], [255, 255, 0], [255, 60, 0], [128, 0, 0]],
};
function makeLut(name) {
  const anchors = ANCHORS[name], lut = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) {
    const t = (v / 255) * (anchors.length - 1), i = Math.min(Math.floor(t), anchors.length - 2), f = t - i;
    for (let c = 0; c < 3; c++) lut[v * 3 + c] = anchors[i][c] * (1 - f) + anchors[i + 1][c] * f;
  }
  return lut;
}

function drawScale() {
  // The colour scale of every map tile: 0 (dark) to the layer's largest activation for this image.
  const canvas = $("scale");
  if (!canvas) return;
  const image = new ImageData(256, 1);
  for (let v = 0; v < 256; v++) image.data.set([state.lut[v * 3], state.lut[v * 3 + 1], state.lut[v * 3 + 2], 255], v * 4);
  canvas.getContext("2d").putImageData(image, 0, 0);
}

const decode = (b64) => Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));

// ---------- drawing pad ----------
function setupPad() {
  const pad = $("pad"), ctx = pad.getContext("2d", { willReadFrequently: true });
  const clear = () => {  // an empty pad shows its hint; the first stroke or a loaded image hides it
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height);
    $("pad-hint").hidden = false;
  };
  clear();
  const point = (e) => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
  };
  pad.addEventListener("pointerdown", (e) => {
    state.penDown = true;
    try { pad.setPointerCapture(e.pointerId); } catch { /* synthetic events have no pointer to capture */ }
    const [x, y] = point(e);
    ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff"; ctx.lineWidth = 10; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.arc(x, y, ctx.lineWidth / 2, 0, 2 * Math.PI); ctx.fill();
    ctx.beginPath(); ctx.moveTo(x, y);
    stroked();
  });
  pad.addEventListener("pointermove", (e) => {
    if (!state.penDown) return;
    const [x, y] = point(e);
    ctx.lineTo(x, y); ctx.stroke(); ctx.beginPath(); ctx.moveTo(x, y);
    stroked();
  });
  const end = () => {
    if (!state.penDown) return;
    state.penDown = false;
    stroked();  // the finished drawing once more, now with its attribution
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  // Cleared, the pad is an empty image: the maps and the prediction follow it rather than keep the old stroke.
  $("clear").addEventListener("click", () => { clear(); state.dirty = true; sendDrawing(); $("source").textContent = ""; });
  state.clearPad = clear;
  // A picked test image goes into the pad as the model saw it, scaled up, so it can be edited by drawing.
  state.loadPad = (result) => {
    const [, height, width] = state.info.input_shape, pixels = decode(result.image);
    const small = new OffscreenCanvas(width, height), image = new ImageData(width, height);
    for (let i = 0; i < width * height; i++) image.data.set([pixels[i], pixels[i], pixels[i], 255], i * 4);
    small.getContext("2d").putImageData(image, 0, 0);
    clear();
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, pad.width, pad.height);
    $("pad-hint").hidden = true;
  };
}

function stroked() {
  $("pad-hint").hidden = true;
  if (state.pendingSince === null) state.pendingSince = performance.now();
  state.dirty = true;
  $("source").textContent = "your drawing (fitted into 20x20, centred by mass, as MNIST was made)";
  sendDrawing();
}

function sendDrawing() {
  if (state.inflight || !state.dirty) return;
  state.dirty = false;
  const since = state.pendingSince;
  state.pendingSince = null;
  state.inflight = true;
  const started = performance.now();
  const pad = $("pad"), rgba = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
  const grey = new Uint8Array(pad.width * pad.height), overlay = !state.penDown && $("show-overlay").checked;
  for (let i = 0; i < grey.length; i++) grey[i] = rgba[i * 4];
  (async () => {
    try {
      const sent = performance.now();
      const result = await newest(runPath(`/drawing?width=${pad.width}&height=${pad.height}&attribution=${overlay}`),
                                  { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: grey });
      if (!result) return;
      const received = performance.now();
      await show(result);
      const painted = performance.now();
      window.convlens.latencies.push(painted - since);
      window.convlens.timings.push({ queued: started - since, encode: sent - started, request: received - sent,
                                     server: result.compute_ms, draw: painted - received, overlay });
    } catch (err) {
      showError(err.message);
    } finally {
      state.inflight = false;
      sendDrawing();
    }
  })();
}

// ---------- test images and uploads ----------
async function pickTest(query, describe, intoPad = true) {
  try {
    const result = await newest(runPath(`/test?${query}`));
    if (!result) return;
    const editable = intoPad && state.info.input_shape[0] === 1;
    if (editable) state.loadPad(result); else state.clearPad();
    await show(result);
    const names = state.info.classes;
    $("source").textContent = `test image #${result.index}, true class ${names[result.label]}` +
      (result.label === result.predicted ? "" : ` (misclassified as ${names[result.predicted]})`) + describe +
      (editable ? "; draw on it to edit it" : "");
    $("index").value = result.index;
  } catch (err) {
    showError(err.message);
  }
}
const randomSeed = () => Math.floor(Math.random() * 2 ** 31);

async function upload(file) {
  try {
    const result = await newest(runPath("/analyse"), {
      method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file,
    });
    if (!result) return;
    const editable = state.info.input_shape[0] === 1;  // as a picked test image: into the pad, to draw on
    if (editable) state.loadPad(result); else state.clearPad();
    await show(result);
    $("source").textContent = `uploaded ${file.name}, preprocessed the way the data set was made` +
      (editable ? "; draw on it to edit it" : "");
  } catch (err) {
    showError(`upload of ${file.name} failed: ${err.message}`);
  }
}

// ---------- showing a result ----------
async function show(result) {
  showError("");
  state.last = result;
  drawInput(result);
  drawProbabilities(result);
  for (const layer of result.layers) drawLayer(layer);
  if (state.beside) for (const layer of state.beside.result.layers) drawLayer(layer, "beside");  // the shared range moved
  window.convlens.updates++;
  const focus = state.pinned || state.hovered;
  if (focus) drawDetailMap(focus.layer, focus.map);
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));  // measured once painted
}

function drawInput(result) {
  // The image the model saw: grey (H, W) bytes, or colour (C, H, W); sized from the run's input shape.
  const [channels, height, width] = state.info.input_shape, size = height * width;
  const pixels = decode(result.image), image = new ImageData(width, height);
  for (let i = 0; i < size; i++) {
    const rgb = channels === 3 ? [pixels[i], pixels[size + i], pixels[2 * size + i]] : [pixels[i], pixels[i], pixels[i]];
    image.data.set([...rgb, 255], i * 4);
  }
  for (const id of ["model-input", "overlay"]) Object.assign($(id), {width, height});
  $("model-input").getContext("2d").putImageData(image, 0, 0);
  const overlay = new ImageData(width, height);  // transparent while a stroke goes on: an old overlay would mislead
  const signed = result.attribution ? new Int8Array(decode(result.attribution.data).buffer) : new Int8Array(size);
  for (let i = 0; i < size; i++) {
    const v = signed[i] / 127;
    overlay.data.set(v >= 0 ? [255, 40, 40, 230 * v] : [40, 110, 255, -230 * v], i * 4);
  }
  $("overlay").getContext("2d").putImageData(overlay, 0, 0);
}

function drawProbabilities(result) {
  const names = state.info.classes, box = $("probs");
  box.replaceChildren();
  result.probabilities.forEach((p, k) => {
    const label = document.createElement("span"), bar = document.createElement("span"), value = document.createElement("span");
    label.textContent = names[k];
    bar.className = "bar";
    const fill = document.createElement("i");
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    bar.append(fill);
    value.textContent = p.toFixed(3);
    if (k === result.predicted) [label, value].forEach((el) => el.classList.add("top"));
    box.append(label, bar, value);
  });
  const prediction = $("prediction");
  prediction.textContent = `${names[result.predicted]}  (p = ${result.probabilities[result.predicted].toFixed(3)})`;
  prediction.dataset.class = result.predicted;
}

const columnsFor = (channels) => (channels <= 32 ? 8 : 16);

function buildLayers() {
  const box = $("layers");
  box.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = state.beside
    ? `Every map of every layer: ${state.beside.caption} (left) against the current image (right)`
    : "Every map of every layer (one colour range per layer)";
  const scale = document.createElement("p");
  scale.className = "scale";
  scale.innerHTML = '0 <canvas id="scale" width="256" height="1"></canvas> the layer\'s largest activation for ' +
    (state.beside ? "either image: the kept and the current image share each layer's range, so they compare"
                  : "this image; each layer has its own range");
  box.append(title, scale);
  drawScale();
  for (const layer of state.info.layers) {
    const div = document.createElement("div"), heading = document.createElement("h3"), row = document.createElement("div");
    div.className = "layer";
    row.className = "side-by-side";
    // Layer names come from graph.json, which anyone may have written: text only, never markup.
    const small = document.createElement("small");
    small.textContent = layer.units ? ` ${layer.channels} units, one bar each (up: positive, down: negative)`
      : ` ${layer.channels} maps of ${layer.height}x${layer.width}${layer.has_oips ? ", OIPs stored" : ""}`;
    heading.append(String(layer.name), small);
    const roles = state.beside ? ["beside", "live"] : ["live"];
    row.append(...roles.map((role) => (layer.units ? unitsCanvas(layer, role) : numbered(layerCanvas(layer, role), layer))));
    div.append(heading, row);
    box.append(div);
  }
  if (state.beside) for (const layer of state.beside.result.layers) drawLayer(layer, "beside");
  fitNumbers();
}

const MIN_NUMBERED_TILE = 26;  // CSS px: a three-digit number at 9 px covers less than half such a tile

function fitNumbers() {
  // Where the grids shrank to fit (two side by side), small tiles drop their numbers rather than hide the maps.
  const shapes = Object.fromEntries(state.info.layers.map((l) => [l.name, l]));
  for (const box of document.querySelectorAll(".tiles")) {
    const canvas = box.querySelector("canvas"), layer = shapes[canvas.dataset.layer || canvas.dataset.besideLayer];
    const tile = (canvas.getBoundingClientRect().width / canvas.width) * (layer.width + 1);
    box.classList.toggle("small-tiles", tile < MIN_NUMBERED_TILE);
  }
}
window.addEventListener("resize", () => { if (state.info) fitNumbers(); });

function buildGraph() {
  // The model as a graph, one box per layer at graph_layout's column and row, arrows from the layers it reads
  // (branches and joins); a layer whose maps or units the page shows opens them with a click.
  const nodes = state.info.graph, shown = new Set(state.info.layers.map((l) => l.name));
  const W = 172, H = 44, BOX_W = 158, BOX_H = 32, left = Math.min(...nodes.map((n) => n.column));
  const at = Object.fromEntries(nodes.map((n) => [n.name, [(n.column - left) * W + 4, n.row * H + 4]]));
  const svgNS = "http://www.w3.org/2000/svg", svg = document.createElementNS(svgNS, "svg");
  const width = (Math.max(...nodes.map((n) => n.column)) - left + 1) * W + 48;  // room at the right for skip arcs
  const height = (Math.max(...nodes.map((n) => n.row)) + 1) * H + 8;
  Object.entries({ width, height, viewBox: `0 0 ${width} ${height}` }).forEach(([k, v]) => svg.setAttribute(k, v));
  const element = (name, attributes, parent = svg) => {
    const e = document.createElementNS(svgNS, name);
    Object.entries(attributes).forEach(([k, v]) => e.setAttribute(k, v));
    parent.append(e);
    return e;
  };
  for (const n of nodes) for (const source of n.inputs) {
    const [x0, y0] = at[source], [x1, y1] = at[n.name];
    if (x0 === x1 && y1 - y0 > H) {  // a skip down one column would hide behind the boxes it passes: arc beside them
      element("path", { d: `M${x0 + BOX_W},${y0 + BOX_H / 2} C${x0 + BOX_W + 40},${y0 + BOX_H / 2} ` +
                           `${x1 + BOX_W + 40},${y1 + BOX_H / 2} ${x1 + BOX_W},${y1 + BOX_H / 2}` });
    } else {  // from the bottom of the input to the top of the node
      element("path", { d: `M${x0 + BOX_W / 2},${y0 + BOX_H} C${x0 + BOX_W / 2},${y1 - 6} ${x1 + BOX_W / 2},` +
                           `${y0 + BOX_H + 6} ${x1 + BOX_W / 2},${y1}` });
    }
  }
  for (const n of nodes) {
    const [x, y] = at[n.name], g = element("g", { "data-node": n.name });
    element("rect", { x, y, width: BOX_W, height: BOX_H }, g);
    // Names come from graph.json, which anyone may have written: set as text, never as markup.
    element("text", { x: x + 5, y: y + 13 }, g).textContent = n.name.length > 24 ? `${n.name.slice(0, 23)}…` : n.name;
    const details = [n.shape.join("x"), n.params ? `${n.params.toLocaleString()} p` : "", n.field > 1 ? `rf ${n.field}` : ""];
    element("text", { x: x + 5, y: y + 26 }, g).textContent = details.filter(Boolean).join(" · ");
    element("title", {}, g).textContent = `${n.name} (${n.kind})`;
    if (shown.has(n.name)) {
      g.classList.add("shown");
      g.addEventListener("click", () => openLayer(n.name));
    }
  }
  $("graph").replaceChildren(svg);
}

function openLayer(name) {
  // Scroll the layer's maps (or bars) into view and flash them, so the eye finds them.
  const canvas = document.querySelector(`canvas[data-layer="${CSS.escape(name)}"]`);
  if (!canvas) return;
  const box = canvas.closest(".layer");
  box.scrollIntoView({ block: "center" });
  box.classList.add("flash");
  setTimeout(() => box.classList.remove("flash"), 1200);
}

function layerCanvas(layer, role) {
  // role "live" follows the pad; "beside" holds the kept image. The live canvas keeps data-layer, which tests read.
  const canvas = document.createElement("canvas");
  const cols = columnsFor(layer.channels), rows = Math.ceil(layer.channels / cols);
  canvas.width = cols * (layer.width + 1) - 1;
  canvas.height = rows * (layer.height + 1) - 1;
  // Every tile at least 44 px wide: conv1's 26-px maps were shown smaller than pool1's 13-px ones.
  const scale = Math.max(1, 44 / layer.width) / (state.beside ? 2 : 1);
  canvas.style.width = `${Math.round(canvas.width * Math.max(1, scale))}px`;
  canvas.dataset[role === "live" ? "layer" : "besideLayer"] = layer.name;
  canvas.dataset.updates = "0";
  canvas.addEventListener("mousemove", (e) => hover(e, layer, canvas));
  canvas.addEventListener("click", (e) => { const m = mapAt(e, layer, canvas); if (m !== null) pin(layer.name, m); });
  return canvas;
}

function unitsCanvas(layer, role) {
  // A dense layer or the logits: a bar per unit, from a midline, scaled like the maps (by the layer's peak).
  const canvas = document.createElement("canvas"), bar = Math.max(1, Math.min(16, Math.floor(480 / layer.channels)));
  canvas.width = layer.channels * bar;  // 10 logits: 48-px bars; 2,048 units: 1 px each
  canvas.height = 2 * BAR_HEIGHT + 1;
  canvas.className = "units";
  canvas.dataset.bar = String(bar);
  canvas.style.width = `${Math.min(canvas.width, 640) / (state.beside ? 2 : 1)}px`;
  canvas.dataset[role === "live" ? "layer" : "besideLayer"] = layer.name;
  canvas.dataset.updates = "0";
  return canvas;
}
const BAR_HEIGHT = 40;  // canvas pixels: a bar's height at the layer's peak

function drawUnits(canvas, layer) {
  const ctx = canvas.getContext("2d"), values = new Int8Array(decode(layer.data).buffer), factor = sharedFactor(layer);
  const bar = Number(canvas.dataset.bar), gap = bar > 2 ? 1 : 0;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#ccc"; ctx.fillRect(0, BAR_HEIGHT, canvas.width, 1);  // the zero line
  values.forEach((v, k) => {
    const height = Math.round((Math.abs(v) / 127) * factor * BAR_HEIGHT);
    ctx.fillStyle = v >= 0 ? "#2f6fed" : "#e0474c";
    ctx.fillRect(k * bar, v >= 0 ? BAR_HEIGHT - height : BAR_HEIGHT + 1, bar - gap, height);
  });
  canvas.dataset.updates = String(Number(canvas.dataset.updates) + 1);
}

function numbered(canvas, layer) {
  // Each tile's map number in page text over its top-left corner: drawn into the canvas it would be
  // scaled with the maps' pixels (the 5-px digits of old). The numbers let the pointer through.
  const cols = columnsFor(layer.channels), rows = Math.ceil(layer.channels / cols);
  const box = document.createElement("div"), numbers = document.createElement("div");
  box.className = "tiles";
  numbers.className = "numbers";
  numbers.style.gridTemplateColumns = `repeat(${cols}, 1fr)`;
  numbers.style.gridTemplateRows = `repeat(${rows}, 1fr)`;
  for (let m = 0; m < layer.channels; m++) {
    const label = document.createElement("span");
    label.textContent = m;
    numbers.append(label);
  }
  box.append(canvas, numbers);
  return box;
}

function keepBeside() {
  // Keep the current image's maps to compare the next drawing or pick with; a second click lets go.
  state.beside = state.beside ? null : { result: state.last, caption: $("source").textContent || "the kept image" };
  $("keep").textContent = state.beside ? "Stop comparing" : "Keep beside";
  buildLayers();
  if (state.last) for (const layer of state.last.layers) drawLayer(layer);
}

function drawLayer(layer, role = "live") {
  const attribute = role === "live" ? "data-layer" : "data-beside-layer";
  const canvas = document.querySelector(`canvas[${attribute}="${layer.name}"]`);
  if (!canvas) return;
  if (layer.units) return drawUnits(canvas, layer);
  const { channels, height: h, width: w } = layer, cols = columnsFor(channels), data = decode(layer.data);
  const image = new ImageData(canvas.width, canvas.height), lut = state.lut, factor = sharedFactor(layer);
  image.data.fill(255);  // white gaps between maps
  for (let c = 0; c < channels; c++) {
    const x0 = (c % cols) * (w + 1), y0 = Math.floor(c / cols) * (h + 1);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = Math.round(data[c * h * w + y * w + x] * factor), o = ((y0 + y) * canvas.width + x0 + x) * 4;
        image.data[o] = lut[v * 3]; image.data[o + 1] = lut[v * 3 + 1]; image.data[o + 2] = lut[v * 3 + 2];
      }
    }
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
  canvas.dataset.updates = String(Number(canvas.dataset.updates) + 1);
}

function sharedFactor(layer) {
  // Each image's maps come scaled to its own peak in the layer; kept beside another, both are rescaled to the
  // larger of the two peaks, so a 4's strong map and a 9's weak one look strong and weak.
  if (!state.beside) return 1;
  const peaks = [state.beside.result, state.last].map((r) => (r && r.layers.find((l) => l.name === layer.name) || {}).peak || 0);
  const shared = Math.max(...peaks);
  return shared > 0 ? layer.peak / shared : 1;
}

// ---------- map detail: OIP and top inputs ----------
function mapAt(e, layer, canvas) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((e.clientX - r.left) * canvas.width) / r.width / (layer.width + 1));
  const y = Math.floor(((e.clientY - r.top) * canvas.height) / r.height / (layer.height + 1));
  const m = y * columnsFor(layer.channels) + x;
  return x >= 0 && x < columnsFor(layer.channels) && m >= 0 && m < layer.channels ? m : null;
}

function hover(e, layer, canvas) {
  const m = mapAt(e, layer, canvas);
  canvas.title = m === null ? "" : `${layer.name} map ${m}`;  // the map's number under the pointer, pinned or not
  if (state.pinned) return;
  if (m === null || (state.hovered && state.hovered.layer === layer.name && state.hovered.map === m)) return;
  state.hovered = { layer: layer.name, map: m };
  showDetail(layer.name, m);
}

function pin(layer, m) {
  const same = state.pinned && state.pinned.layer === layer && state.pinned.map === m;
  state.pinned = same ? null : { layer, map: m };
  showDetail(layer, m);
}

async function showDetail(layer, m) {
  const key = `${state.run}/${layer}/${m}`, box = $("detail");
  box.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = `${layer} · map ${m}${state.pinned ? " (pinned, click again to release)" : ""}`;
  const big = document.createElement("canvas");
  big.className = "big"; big.id = "detail-map";
  box.append(title, big);
  drawDetailMap(layer, m);
  const waiting = document.createElement("p");
  waiting.className = "hint"; waiting.textContent = "finding the test images that drive this map…";
  box.append(waiting);
  const movedOn = () => { const f = state.pinned || state.hovered; return !f || f.layer !== layer || f.map !== m; };
  try {
    let detail = state.details.get(key);
    while (!detail) {  // the server searches the test set once, in the background; show how far it is
      const answer = await api(runPath(`/maps/${encodeURIComponent(layer)}/${m}`));
      if (answer.top) state.details.set(key, (detail = answer));
      else if (movedOn()) return;
      else {
        const { done, total } = answer.searched, bar = document.createElement("progress");
        bar.max = total; bar.value = done;
        waiting.replaceChildren(`searching the ${total.toLocaleString()} test images for those that drive each map: `,
                                `${Math.floor((100 * done) / total)}% `, bar);
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    }
    if (movedOn()) return;  // the user has moved on
    waiting.remove();
    const oip = document.createElement("div");
    oip.className = "oip";
    oip.innerHTML = "<h3>OIP <small>the input that drives it hardest, from noise</small></h3>";
    if (detail.oip) {
      const img = new Image();
      img.src = detail.oip.image; img.alt = `OIP of ${layer} map ${m}`;
      const note = document.createElement("p");
      note.className = "hint"; note.textContent = `mean activation ${detail.oip.activation}`;
      oip.append(img, note);
    } else {
      const note = document.createElement("p");
      note.className = "hint";
      const command = document.createElement("code");
      command.textContent = `convlens oip RUN --layer ${layer}`;
      note.append("none stored for this run: ", command);
      oip.append(note);
    }
    const tops = document.createElement("div");
    tops.className = "tops";
    for (const t of detail.top) {
      const fig = document.createElement("figure"), img = new Image(), cap = document.createElement("figcaption");
      img.src = t.image; img.alt = `test image ${t.index}`;
      cap.textContent = `#${t.index} ${t.label}\n${t.activation.toFixed(2)}`;
      fig.append(img, cap);
      tops.append(fig);
    }
    const topTitle = document.createElement("h3");
    topTitle.innerHTML = "Top test images <small>highest peak in this map</small>";
    box.append(oip, topTitle, tops);
  } catch (err) {
    waiting.textContent = err.message;
  }
}

function drawDetailMap(layer, m) {
  const canvas = $("detail-map"), entry = state.last && state.last.layers.find((l) => l.name === layer);
  if (!canvas || !entry) return;
  const { height: h, width: w } = entry, data = decode(entry.data), image = new ImageData(w, h), lut = state.lut;
  canvas.width = w; canvas.height = h;
  for (let i = 0; i < h * w; i++) {
    const v = data[m * h * w + i];
    image.data.set([lut[v * 3], lut[v * 3 + 1], lut[v * 3 + 2], 255], i * 4);
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
  canvas.title = `peak ${entry.map_peaks[m]} (layer peak ${entry.peak})`;
}

// ---------- runs ----------
async function openRun(name) {
  state.run = name;
  state.beside = null;
  $("keep").textContent = "Keep beside";
  state.pinned = state.hovered = null;
  state.info = await api(runPath(""));
  const i = state.info;
  $("run-info").textContent = `${i.model} on ${i.dataset}` +
    (i.test_accuracy === null ? "" : `, test accuracy ${(100 * i.test_accuracy).toFixed(2)}%`) +
    (i.unfinished ? ` (${i.unfinished})` : "");
  const select = $("class");
  select.replaceChildren(...i.classes.map((c, k) => new Option(`${k}: ${c}`, k)));
  $("index").max = i.test_size - 1;
  // The pad draws grey digits; a colour model takes a picture: upload it, or drop it anywhere on the page.
  $("pad").parentElement.hidden = i.input_shape[0] !== 1;  // the pad with its hint
  buildGraph();
  buildLayers();
  await pickTest("pick=index&index=0", "", false);  // maps to look at from the start, the pad left empty
}

async function start() {
  state.lut = makeLut(state.cmap);
  setupPad();
  $("cmap").addEventListener("change", (e) => {
    state.cmap = e.target.value;
    state.lut = makeLut(state.cmap);
    drawScale();
    if (state.last) show(state.last);
  });
  $("pick-class").addEventListener("click", () => pickTest(`pick=class&label=${$("class").value}&seed=${randomSeed()}`, ""));
  $("pick-random").addEventListener("click", () => pickTest(`pick=random&seed=${randomSeed()}`, ""));
  $("pick-wrong").addEventListener("click", () => pickTest(`pick=misclassified&seed=${randomSeed()}`, ""));
  $("pick-index").addEventListener("click", () => pickTest(`pick=index&index=${Number($("index").value) || 0}`, ""));
  $("upload").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); e.target.value = ""; });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
  });
  $("keep").addEventListener("click", keepBeside);
  $("show-overlay").addEventListener("change", (e) => {
    $("overlay").style.visibility = e.target.checked ? "visible" : "hidden";
    if (e.target.checked && state.last && !state.last.attribution) { state.dirty = true; sendDrawing(); }  // a drawing sent without it
  });
  $("run").addEventListener("change", (e) => openRun(e.target.value).catch((err) => showError(err.message)));
  try {
    const listing = await api("/api/runs");
    $("run").replaceChildren(...listing.runs.map((r) => new Option(r, r)));
    if (!listing.default) throw new Error("no trained runs in this folder; train one with convlens train");
    $("run").value = listing.default;
    await openRun(listing.default);
    document.body.dataset.ready = "1";
  } catch (err) {
    showError(err.message);
  }
}

start();
