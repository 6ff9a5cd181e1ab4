"""catlr serve's page: one self-contained HTML document (its style and script inline,
allowed by their hashes in its Content-Security-Policy, so it runs nothing else), every
field from the model filled through `_fill`, escaped."""

from __future__ import annotations

import base64
import hashlib
import html
import re

from ..text import printable

STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;
color:#1d1d1f;background:#fafafa}
h1{font-size:1.6rem;margin:.2rem 0}
.model{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.8rem 0;
padding:.8rem 1rem;background:#fff;border:1px solid #ddd;border-radius:8px}
.model dt{color:#666}.model dd{margin:0;overflow-wrap:anywhere}
.drop{display:block;border:2px dashed #888;border-radius:10px;padding:2rem;text-align:center;
cursor:pointer;background:#fff}
.drop.over{border-color:#0a6;background:#efe}
.drop input{display:block;margin:.6rem auto 0}
.limits,#status{color:#666;font-size:.9rem}
#results{display:flex;flex-wrap:wrap;gap:1rem;margin-top:1rem}
.card{margin:0;width:12rem;padding:.7rem;background:#fff;border:1px solid #ddd;border-radius:8px}
.card img{display:block;width:128px;height:128px;image-rendering:pixelated;margin:0 auto .4rem;
border:1px solid #ccc}
.card .name{font-size:.85rem;color:#444;overflow-wrap:anywhere}
.card .verdict{font-weight:600;font-size:1.1rem}.card .probability{color:#333}
.card.positive .verdict{color:#07804a}.card.negative .verdict{color:#555}
.card.bad{border-color:#d33}.card.bad .verdict{color:#b00;font-weight:400}
.card .why{font-size:.8rem;color:#444;margin-top:.4rem}.card .why img{margin:.3rem auto}
"""

SCRIPT = """
const body = document.body, zone = document.getElementById("drop");
const input = document.getElementById("pick"), out = document.getElementById("results");
const status = document.getElementById("status");
const maxImages = Number(body.dataset.maxImages), maxBytes = Number(body.dataset.maxBytes);
const positive = body.dataset.positive, negative = body.dataset.negative;
input.addEventListener("change", () => { send(Array.from(input.files)); input.value = ""; });
zone.addEventListener("dragover", e => { e.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", e => {
  e.preventDefault(); zone.classList.remove("over"); send(Array.from(e.dataTransfer.files));
});
async function send(files) {
  let batch = [], bytes = 0;
  for (const f of files) {
    if (batch.length && (batch.length === maxImages || bytes + f.size > maxBytes)) {
      await ask(batch); batch = []; bytes = 0;
    }
    batch.push(f); bytes += f.size;
  }
  if (batch.length) await ask(batch);
}
async function ask(files) {
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  status.textContent = "Scoring " + files.length + (files.length === 1 ? " photo" : " photos");
  let rows;
  try {
    const answer = await (await fetch("predict?seen=1&explain=1",
                                      {method: "POST", body: form})).json();
    rows = Array.isArray(answer) ? answer
      : answer.rows || files.map(f => ({path: f.name, error: answer.error}));
  } catch (e) {
    rows = files.map(f => ({path: f.name, error: "no answer from the server (" + e + ")"}));
  }
  for (const row of rows) show(row);
  status.textContent = "";
}
function show(row) {
  const card = document.createElement("figure");
  card.className = "card " + (row.error ? "bad" : row.label === positive ? "positive" : "negative");
  if (row.seen) {
    const img = new Image(128, 128);
    img.src = row.seen;
    img.alt = "the image the model sees";
    card.append(img);
  }
  const caption = document.createElement("figcaption");
  const name = document.createElement("div"), verdict = document.createElement("div");
  name.className = "name"; verdict.className = "verdict";
  name.textContent = row.path;
  verdict.textContent = row.error ? "error: " + row.error : row.label;
  caption.append(name, verdict);
  if (!row.error) {
    const p = document.createElement("div");
    p.className = "probability";
    p.textContent = "probability " + row.probability.toFixed(3);
    caption.append(p);
  }
  if (row.explanation) explained(caption, row.explanation);
  card.append(caption);
  out.prepend(card);
}
function explained(caption, e) {
  const why = document.createElement("div"), heat = new Image(128, 128);
  const sums = document.createElement("div"), key = document.createElement("div");
  why.className = "why"; sums.className = "sums"; key.className = "key";
  heat.className = "heat"; heat.src = e.heat;
  heat.alt = "each pixel's push: red towards " + positive + ", blue towards " + negative;
  const signed = v => (v < 0 ? "-" : "+") + Math.abs(v).toFixed(2);
  sums.textContent = "logit " + signed(e.logit) + " = pixels " + signed(e.contributions)
    + " + b " + signed(e.b);
  key.textContent = "red: towards " + positive + ", blue: towards " + negative;
  why.append(heat, sums, key);
  caption.append(why);
}
"""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>catlr: {{positive}} or {{negative}}?</title>
<link rel="icon" href="data:,">
<style>{{style}}</style></head>
<body data-max-images="{{max_images}}" data-max-bytes="{{max_bytes}}" data-positive="{{positive}}"
data-negative="{{negative}}">
<h1>{{positive}} or {{negative}}? Try your photos</h1>
<dl class="model">
<dt>Model</dt><dd id="model">{{model}}</dd>
<dt>Trained on</dt><dd id="data">{{data}}</dd>
<dt>Test</dt><dd id="test">{{test}}</dd>
<dt>Train</dt><dd id="train">{{train}}</dd>
<dt>Sees</dt><dd>{{size}} x {{size}} RGB ({{fit}}); {{positive}} when the probability is
over {{threshold}}</dd>
</dl>
<label id="drop" class="drop">Drop photos here, or pick them:
<input id="pick" type="file" accept="image/*" multiple></label>
<p class="limits">Up to {{max_images}} photos and {{max_upload}} a request, decoded as
<code>catlr predict</code> decodes them (EXIF rotation, then {{fit}} to {{size}} x {{size}}).
Nothing leaves this machine.</p>
<div id="status" role="status"></div>
<section id="results"></section>
<script>{{script}}</script>
</body></html>
"""


def _figure(meta: dict, split: str) -> str:
    accuracy, m = meta.get(f"{split}_accuracy"), meta.get(f"m_{split}")
    if accuracy is None:
        return "not measured"
    return f"{accuracy:.2%} accuracy" + (f" on {m} images" if m else "")


def _fill(template: str, fields: dict) -> str:
    """The template with every {{key}} replaced by its field, escaped: the one place a
    string from a file (a class name, a path) enters the page."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: html.escape(printable(fields[m.group(1)])),
                  template)


def page(info: dict, limits) -> tuple[bytes, str]:
    """(the page's HTML, its Content-Security-Policy) for the model `info` (app.model_info)
    and its app.Limits: only its own inline style and script run, and it fetches only from
    this server."""
    fields = {"positive": info["classes"][1], "negative": info["classes"][0],
              "model": info["model"], "data": info["data"] or "unknown",
              "test": _figure(info, "test"), "train": _figure(info, "train"),
              "size": info["image_size"], "fit": info["fit"], "threshold": info["threshold"],
              "max_images": limits.max_images, "max_bytes": limits.max_bytes,
              "max_upload": f"{limits.max_bytes / 2**20:g} MB", "style": "", "script": ""}
    text = _fill(TEMPLATE, fields)
    # the style and script are catlr's own, not escaped (quotes and > must stay code)
    text = text.replace("<style></style>", f"<style>{STYLE}</style>").replace(
        "<script></script>", f"<script>{SCRIPT}</script>")

    def digest(code):
        return "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"

    policy = (f"default-src 'none'; script-src {digest(SCRIPT)}; style-src {digest(STYLE)}; "
              "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return text.encode("utf-8"), policy
