// vitlab serve: the page. Sends images to POST /predict and draws what comes back; no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
let result = null;   // the last /predict answer
let view = null;     // its "what the model sees" image, decoded
let maxBytes = null; // the largest upload the server takes (from the model card)

const mib = (n) => `${+(n / 2 ** 20).toFixed(1)} MiB`;

// Inferno-like colour ramp: dark = little attention, bright = much.
const STOPS = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];
function heat(v) {
  const x = Math.min(Math.max(v, 0), 1) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2), f = x - i;
  return STOPS[i].map((a, k) => Math.round(a + f * (STOPS[i + 1][k] - a)));
}

// A (gh * gw) map as a gw x gh canvas of colours, scaled to its own maximum.
function heatCanvas(values, gh, gw) {
  const max = Math.max(...values) || 1;
  const c = document.createElement("canvas");
  c.width = gw; c.height = gh;
  const ctx = c.getContext("2d"), img = ctx.createImageData(gw, gh);
  values.forEach((v, i) => {
    const [r, g, b] = heat(v / max);
    img.data.set([r, g, b, 255], 4 * i);
  });
  ctx.putImageData(img, 0, 0);
  return c;
}

// The image with a map over it; patches stay crisp squares, as the model sees them.
function drawOverlay(canvas, values, width) {
  const [gh, gw] = result.grid;
  canvas.width = width;
  canvas.height = Math.round(width * view.height / view.width);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(view, 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = $("opacity").value / 100;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(heatCanvas(values, gh, gw), 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 1;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function predict(file) {
  showError("");
  if (maxBytes !== null && file.size > maxBytes) {  // told here: the server would only refuse it after the upload
    showError(`${file.name || "the image"} is ${mib(file.size)}; the server takes images of at most ${mib(maxBytes)}: ` +
      "send a smaller or more compressed file");
    return;
  }
  $("status").textContent = `classifying ${file.name || "image"}...`;
  const form = new FormData();
  form.append("image", file, file.name || "image");
  let answer;
  try {
    const r = await fetch("/predict?topk=5", { method: "POST", body: form });
    answer = await r.json().catch(() => ({ error: `the server answered ${r.status} ${r.statusText}` }));
    if (!r.ok) throw new Error(answer.error || `the server answered ${r.status}`);
  } catch (e) {
    $("status").textContent = "";
    showError(e.message);
    return;
  }
  result = answer;
  view = new Image();
  view.onload = render;
  view.src = answer.image;
  $("status").textContent = `${answer.file}: done`;
}

function render() {
  $("result").hidden = false;
  $("layers").hidden = false;
  $("predicted").textContent = result.predicted;
  $("topk").replaceChildren(...result.top.map((t) => {
    const li = document.createElement("li");
    const pct = (100 * t.probability).toFixed(1);
    li.innerHTML = `<div class="name"><span></span><span>${pct}%</span></div><div class="bar"><div style="width:${pct}%"></div></div>`;
    li.querySelector(".name span").textContent = t.label;
    li.dataset.label = t.label;
    li.dataset.probability = t.probability;
    return li;
  }));
  const layers = result.attention.length;
  const slider = $("layer");
  slider.max = layers;
  if (+slider.value > layers) slider.value = layers;
  $("attention-hint").textContent = result.class_token
    ? "How much the class token attends to each patch, in the chosen layer: one tile per head and their mean."
    : "This model pools all patches (no class token): each tile shows the attention each patch receives, averaged over patches.";
  draw();
}

function draw() {
  if (!result || !view) return;
  drawOverlay($("rollout-canvas"), result.rollout.flat(), 256);
  const l = $("layer").value - 1, heads = result.attention[l];
  $("layer-label").textContent = `${l + 1} of ${result.attention.length}`;
  const mean = heads[0].map((_, i) => heads.reduce((s, h) => s + h[i], 0) / heads.length);
  const tiles = [["mean of heads", mean], ...heads.map((h, k) => [`head ${k + 1}`, h])];
  $("heads").replaceChildren(...tiles.map(([name, values]) => {
    const fig = document.createElement("figure"), c = document.createElement("canvas");
    drawOverlay(c, values, 112);
    fig.append(c, Object.assign(document.createElement("figcaption"), { textContent: name }));
    return fig;
  }));
}

function row(name, value) {
  const tr = document.createElement("tr");
  tr.innerHTML = "<th></th><td></td>";
  tr.children[0].textContent = name;
  tr.children[1].textContent = value;
  return tr;
}

async function loadCard() {
  let card;
  try {
    const r = await fetch("/model");
    card = await r.json();
  } catch (e) {
    $("model-line").textContent = "could not load the model card: " + e.message;
    return;
  }
  maxBytes = card.limits.bytes;
  $("limit").textContent = `(at most ${mib(maxBytes)})`;
  const a = card.architecture, [h, w] = a.img_size;
  const arch = `ViT: ${card.depth} layers, width ${a.embed_dim}, ${card.num_heads} heads, MLP ${a.mlp_dim}, ` +
    `patch ${a.patch_size}, input ${h}x${w}x${a.in_chans}, classifier ${a.classifier}, pos_embed ${a.pos_embed}`;
  $("model-line").textContent = `${card.source} - ${card.parameters.toLocaleString("en")} parameters, ${card.classes.length} classes`;
  const rows = [row("architecture", arch), row("parameters", card.parameters.toLocaleString("en")),
    row("classes", card.classes.join(", "))];
  if (card.checkpoint) rows.push(row("weights", `checkpoint ${card.checkpoint}`));
  const t = card.training;
  if (t) rows.push(row("training", `${t.model} on ${t.dataset}, batch ${t.batch_size}, ${t.optimizer} lr ${t.lr}`));
  const f = card.final;
  if (f && f.top1 !== undefined) {
    rows.push(row(`${f.split} accuracy`, `top-1 ${f.top1.toFixed(2)}%, top-5 ${f.top5.toFixed(2)}% on ${f.n.toLocaleString("en")} images`));
    rows.push(row("training time", `${(f.train_time_s / 60).toFixed(1)} min, ${f.steps} steps (${f.epochs} epochs) on ${f.device}`));
  }
  $("card-table").replaceChildren(...rows);
  $("notes").replaceChildren(...card.notes.map((n) => Object.assign(document.createElement("li"), { textContent: n })));

  $("examples-box").hidden = card.examples.length === 0;
  $("examples").replaceChildren(...card.examples.map((ex, k) => {
    const b = document.createElement("button");
    b.type = "button";
    b.id = `example-${k}`;
    b.innerHTML = `<img alt=""><span></span>`;
    b.querySelector("img").src = ex.url;
    b.querySelector("span").textContent = ex.label;
    b.title = `a test image labelled ${ex.label}`;
    b.onclick = async () => {
      const blob = await (await fetch(ex.url)).blob();
      predict(new File([blob], `example ${k + 1} (${ex.label}).png`, { type: "image/png" }));
    };
    return b;
  }));

  $("figures-box").hidden = card.figures.length === 0;
  $("figures").replaceChildren(...card.figures.map((fig) => {
    const el = document.createElement("figure");
    el.innerHTML = `<img alt=""><figcaption><strong></strong> <span></span></figcaption>`;
    el.querySelector("img").src = fig.url;
    el.querySelector("img").alt = fig.title;
    el.querySelector("strong").textContent = fig.title + ".";
    el.querySelector("span").textContent = fig.caption;
    return el;
  }));
}

$("file-input").addEventListener("change", (e) => { if (e.target.files[0]) predict(e.target.files[0]); });
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) predict(file); else showError("nothing to classify: drop an image file");
});
$("opacity").addEventListener("input", draw);
$("layer").addEventListener("input", draw);
loadCard();
