"""Pictures: cost curves, the learning-rate sweep, the weights, a sheet of mistakes, and
why a model says what it says of a photo (explain).

Plots use matplotlib's Figure directly (no pyplot, no window, the Agg renderer);
the mistake sheet is drawn with Pillow. Every file is written atomically.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from ..files.caches import quiet_matplotlib

quiet_matplotlib()  # before matplotlib loads: a read-only HOME warns on stderr otherwise

from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ..files.outputs import atomic_path
from ..files.pictures import SOFTWARE  # marks the pictures catlr writes
from ..learn.loss import labels as predicted
from ..text import printable

# Every text drawn is escaped as the terminal's are (a newline or an escape sequence in a
# file name would break the layout or the font); a glyph the font lacks is drawn as a box,
# which matplotlib would also warn about on stderr.
warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight",
                metadata={"Software": SOFTWARE})
    return buf.getvalue()


def _save(fig, paths):
    """Render once, write the PNG to `paths` (one path or a list), each atomically."""
    data = _png(fig)
    for path in paths if isinstance(paths, (list, tuple)) else [paths]:
        with atomic_path(path, "png") as tmp:
            tmp.write_bytes(data)


def _iterations(costs, every):
    return [i * every for i in range(len(costs))]


def _fit_text(draw, text: str, font, width: int) -> str:
    """text, cut in the middle with '...' until it is at most `width` pixels wide."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 2:
        keep -= 1
        short = text[:keep // 2] + "..." + text[len(text) - (keep - keep // 2):]
        if draw.textlength(short, font=font) <= width:
            return short
    return "..."


def cost_curve_png(costs, every, *, title="Cost during training", final=None,
                   held=(None, ()), best=None) -> bytes:
    """Cost against iteration for one run, as PNG bytes (runs.py writes them), the
    course's look: iterations in hundreds (in print_every's), cost. `final`: (iteration,
    cost) after the last update, marked apart; `held`: (name, costs) of the held-out
    examples at the same iterations, the second curve (overfitting shows as the two
    parting); `best`: the iteration of the lowest validation cost, marked."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    unit = "hundreds" if every == 100 else f"{every}s"
    x = [i for i in range(len(costs))]
    ax.plot(x, costs, marker="o", markersize=3, label="training cost")
    name, held_costs = held
    if held_costs:
        ax.plot(x[:len(held_costs)], held_costs, marker="o", markersize=3, color="darkorange",
                label=f"{name} cost" + (" (the test split: no validation split)"
                                        if name == "test" else ""))
    if best is not None:
        ax.axvline(best / every, color="gray", linestyle=":", label=f"lowest validation cost "
                   f"(iteration {best})")
    if final and final[1] is not None:
        ax.plot([final[0] / every], [final[1]], marker="s", color="firebrick",
                linestyle="none", label=f"final: {final[1]:.6f} (after iteration {final[0]})")
    ax.legend(fontsize=8)
    ax.set(title=printable(title), xlabel=f"iterations (per {unit})", ylabel="cost")
    ax.grid(alpha=0.3)
    return _png(fig)


def sweep_curves(rows, path, *, title="Cost per learning rate"):
    """One cost curve per learning rate (rows as returned by train.sweep), with a legend."""

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    penalties = len({row.get("l2", 0) for row in rows}) > 1
    for row in rows:
        ax.plot(_iterations(row["costs"], row["print_every"]), row["costs"],
                label=f"lr = {row['lr']:g}" + (f", l2 = {row['l2']:g}" if penalties else ""))
    ax.set(title=printable(title), xlabel="iteration", ylabel="cost")
    ax.legend(title="learning rate")
    ax.grid(alpha=0.3)
    _save(fig, path)


def weights_picture(w, size, path, *, classes=("non-cat", "cat"), title="Weights w as an image"):
    """w (n_x, 1) reshaped to size x size x 3: red pushes towards the positive class, blue away."""

    img = np.asarray(w, dtype=np.float64).reshape(size, size, 3)
    panels = [("mean of R, G, B", img.mean(axis=2)), ("red channel", img[..., 0]),
              ("green channel", img[..., 1]), ("blue channel", img[..., 2])]
    lim = float(np.abs(img).max()) or 1.0
    fig = Figure(figsize=(11, 3.4))
    axes = fig.subplots(1, 4)
    for ax, (name, a) in zip(axes, panels):
        shown = ax.imshow(a, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set(title=name, xticks=[], yticks=[])
    fig.colorbar(shown, ax=list(axes), shrink=0.85,
                 label=printable(f"weight (red: towards {classes[1]}, blue: towards "
                                 f"{classes[0]})"))
    fig.suptitle(printable(title))
    _save(fig, path)


MISTAKES = 60  # drawn at most on one sheet


def mistakes_sheet(images, labels, probabilities, paths, classes, path, *, threshold=0.5,
                   title="Misclassified images", scale=2, columns=6, limit=MISTAKES):
    """A contact sheet of misclassified images, most confident mistakes first (at most `limit`).

    images (m, s, s, 3) uint8, labels (m,), probabilities (m,) of the positive class.
    Returns the number of mistakes (all of them, drawn or not).
    """

    labels, probs = np.ravel(labels), np.ravel(probabilities)
    wrong = np.flatnonzero(predicted(probs, threshold) != labels)
    wrong = wrong[np.argsort(-np.abs(probs[wrong] - threshold), kind="stable")]
    total = len(wrong)
    wrong = wrong[:limit]
    s = images.shape[1] * scale
    font = ImageFont.load_default(size=12)
    head, cap, pad = 34, 48, 8
    cols = max(1, min(columns, len(wrong)))
    rows = -(-len(wrong) // cols) if len(wrong) else 0
    width = max(cols * (s + pad) + pad, 420)
    sheet = Image.new("RGB", (width, head + rows * (s + cap + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    summary = f"{title}: {total} of {len(labels)}" + (
        (", most confident first" + (f", the first {limit} shown" if total > limit else ""))
        if total else " (none)")
    draw.text((pad, 10), printable(summary), fill="black", font=ImageFont.load_default(size=15))
    for k, i in enumerate(wrong):
        x0 = pad + (k % cols) * (s + pad)
        y0 = head + (k // cols) * (s + cap + pad)
        tile = Image.fromarray(images[i]).resize((s, s), Image.Resampling.NEAREST)
        sheet.paste(tile, (x0, y0))
        draw.text((x0, y0 + s + 2), _fit_text(draw, printable(f"true: {classes[int(labels[i])]}"),
                                              font, s), fill="black", font=font)
        draw.text((x0, y0 + s + 16), _fit_text(draw, printable(f"p({classes[1]}) = {probs[i]:.2f}"),
                                               font, s), fill="firebrick", font=font)
        draw.text((x0, y0 + s + 30), _fit_text(draw, printable(os.path.basename(paths[i])), font,
                                               s), fill="dimgray", font=font)
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", SOFTWARE)
    with atomic_path(path, "png") as tmp:
        sheet.save(tmp, format="PNG", pnginfo=info)
    return total


EXPLAINED = 8  # photos drawn at most in one explanation picture (one row each)


def _lines(text: str, width: int = 0) -> str:
    """Text of several lines, each escaped (printable writes a newline as '\\n') and, with
    `width`, wrapped at that many characters."""
    import textwrap

    lines = [printable(line) for line in text.split("\n")]
    if width:
        lines = [w for line in lines for w in textwrap.wrap(line, width) or [""]]
    return "\n".join(lines)


def _box(ax, region, color):
    """Outline a region {"rows": [r0, r1], "columns": [c0, c1]} of an image drawn by imshow."""
    from matplotlib.patches import Rectangle

    (r0, r1), (c0, c1) = region["rows"], region["columns"]
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False,
                           edgecolor=color, linewidth=1.6))


def _explained_row(fig, e, classes):
    """One photo's row: the photo, what the model sees, the signed map, the sums, and the
    training images most alike."""
    doc = e.doc
    grid = fig.add_gridspec(2, 7, width_ratios=[1.25, 1, 1.2, 1.25, 0.55, 0.55, 0.55],
                            height_ratios=[1, 1], wspace=0.35, hspace=0.45)
    _seen_panels(fig, grid, e, classes)
    _sums_panel(fig.add_subplot(grid[:, 3]), doc, classes[1])
    _alike_panels(fig, grid, e)
    verdict = f"{doc['path']}: {doc['label']}, p({classes[1]}) = {doc['probability']:.3f} " \
              f"(threshold {doc['threshold']:g})"
    fig.suptitle(printable(verdict), fontsize=12, fontweight="bold", x=0.01, ha="left")
    notes = "\n".join(_lines(f"- {n}", 190) for n in doc.get("notes") or [])
    fig.text(0.01, 0.01, notes, fontsize=9.5, va="bottom", ha="left")


def _seen_panels(fig, grid, e, classes):
    """The photo, the size x size copy the model sees, and each pixel's push on a diverging
    map centred on zero (its colour bar labelled with the classes), the regions boxed."""
    doc = e.doc
    neg, pos = classes
    size = doc["image"]["size"]
    width, height = doc["image"]["original"]
    photo = fig.add_subplot(grid[:, 0])
    photo.imshow(e.original)
    photo.set(title=f"the photo ({width} x {height})", xticks=[], yticks=[])
    seen = fig.add_subplot(grid[:, 1])
    seen.imshow(e.seen, interpolation="nearest")
    seen.set(title=f"what the model sees\n({size} x {size}, {doc['image']['fit']})",
             xticks=[], yticks=[])
    heat = fig.add_subplot(grid[:, 2])
    m = np.asarray(doc["map"])
    lim = float(np.abs(m).max()) or 1.0
    shown = heat.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    heat.set(title="each pixel's push on z: w_i x_i\n(boxes: the regions pushing most)",
             xticks=[], yticks=[])
    for ax in (seen, heat):
        for side, color in (("positive", "#b2182b"), ("negative", "#2166ac")):
            for region in doc["regions"][side]:
                _box(ax, region, color)
    bar = fig.colorbar(shown, ax=heat, orientation="horizontal", fraction=0.06, pad=0.04)
    bar.set_ticks([-lim, 0, lim])
    bar.set_ticklabels([printable(f"{neg} {-lim:.2f}"), "0", printable(f"{pos} +{lim:.2f}")])


def _sums_panel(sums, doc, pos):
    """The bars that add up to the logit: each channel's pixels, b, and z itself."""
    ch = doc["channels"]
    names = ["red pixels", "green pixels", "blue pixels", "b", "logit z"]
    values = [ch["red"], ch["green"], ch["blue"], doc["b"], doc["logit"]]
    colors = ["#b2182b" if v > 0 else "#2166ac" for v in values]
    colors[-1] = "#333333"
    sums.barh(names[::-1], values[::-1], color=colors[::-1])
    sums.axvline(0, color="black", linewidth=0.8)
    for k, v in enumerate(values[::-1]):
        sums.annotate(f"{v:+.2f}", (v, k), xytext=(3 if v >= 0 else -3, 0),
                      textcoords="offset points", va="center", fontsize=8,
                      ha="left" if v >= 0 else "right")
    span = max(abs(v) for v in values) * 1.45 or 1.0
    sums.set_xlim(-span, span)
    sums.set_title(_lines(f"z = red + green + blue + b\np({pos}) = sigmoid(z) = "
                          f"{doc['probability']:.3f}"), fontsize=10)
    sums.tick_params(labelsize=8)


def _alike_panels(fig, grid, e):
    """The training images most alike, by pixels and by the model's score (three each), or
    a note saying why there are none."""
    doc = e.doc
    alike = doc.get("alike")
    if alike is None:  # the training data is gone (or was never a file): say so there
        ax = fig.add_subplot(grid[:, 4:])
        ax.axis("off")
        ax.set_title("training images most alike", fontsize=9, loc="left")
        ax.text(0, 0.85, _lines(doc["training"].get("note") or "no training data", 40),
                transform=ax.transAxes, fontsize=9, va="top")
        return
    titles = {"by_pixels": "training images most alike by pixels",
              "by_score": "... and by the model's score"}
    for r, kind in enumerate(("by_pixels", "by_score")):
        rows = alike[kind][:3]
        for c in range(3):
            ax = fig.add_subplot(grid[r, 4 + c])
            ax.set(xticks=[], yticks=[])
            if c < len(rows):
                ax.imshow(e.alike[kind][c], interpolation="nearest")
                ax.set_xlabel(printable(f"#{rows[c]['index']} {rows[c]['label']}"), fontsize=8)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_title(titles[kind], fontsize=8, loc="left")


def explain_figure(explanations, classes=("non-cat", "cat")):
    """Why the model says what it says of each photo (explain.Explanation), one row each
    (at most EXPLAINED): the photo, the size x size copy the model sees, each pixel's part
    of the logit on a diverging map centred on zero (red towards classes[1], blue towards
    classes[0]), the sums that make the logit, and the training images most alike. None
    when no photo could be read."""
    shown = [e for e in explanations if "error" not in e.doc][:EXPLAINED]
    if not shown:
        return None
    fig = Figure(figsize=(16, 4.4 * len(shown)))
    rows = fig.subfigures(len(shown), 1, squeeze=False)[:, 0]
    for sub, e in zip(rows, shown):
        _explained_row(sub, e, classes)
        sub.subplots_adjust(left=0.01, right=0.99, top=0.80, bottom=0.17)
    return fig


def explain_picture(explanations, path, classes=("non-cat", "cat")) -> int:
    """explain_figure's picture as a PNG at `path`; returns the number of photos drawn."""
    fig = explain_figure(explanations, classes)
    if fig is None:
        return 0
    _save(fig, path)
    return len(fig.subfigs)


KINDS = {"low": "both low", "rising": "still rising", "overfitting": "flat, overfitting",
         "flat": "flat"}


def eval_picture(result, path):
    """What eval measured, as one PNG: the precision-recall curve of the split with the
    threshold's point (and 0.5's when it differs), the reliability diagram (each bin's mean
    probability against its share of positives, with Wilson intervals, and the count per
    bin beneath) and, when computed, the learning curve (training and held-out accuracy
    against the number of training images, with intervals, the majority class and the
    shuffled labels' range). result: evaluate.Evaluation."""
    from ..learn.metrics import pr_curve, report

    f = result.figures
    pos = f["classes"][1]
    curve = f.get("learning_curve")
    fig = Figure(figsize=(15 if curve else 10.5, 4.8))
    grid = fig.add_gridspec(4, 3 if curve else 2, wspace=0.3, hspace=0.15)

    ax = fig.add_subplot(grid[:, 0])
    c = pr_curve(result.labels, result.probabilities)
    ax.step(np.r_[0.0, c["recall"]], np.r_[1.0, c["precision"]], where="pre",
            label="every threshold")
    share = f["positives"] / f["m"]
    ax.axhline(share, color="gray", linestyle="--", linewidth=1,
               label=printable(f"always {pos}: precision {share:.2f}"))
    if result.threshold != 0.5:
        half = report(result.labels, result.probabilities, 0.5)
        ax.plot([half["recall"]], [half["precision"]], "o", markersize=13, markerfacecolor="none",
                color="gray", label=f"threshold 0.5: precision {half['precision']:.2f}, recall "
                      f"{half['recall']:.2f}")
    how = ("given" if f.get("threshold_from") == "given" else "chosen on validation"
           if f.get("threshold_choice") else "the model's")
    ax.plot([f["recall"]], [f["precision"]], "o", color="firebrick", markersize=8,
            label=f"threshold {result.threshold:.3g} ({how}): precision {f['precision']:.2f}, "
                  f"recall {f['recall']:.2f}")
    ax.set(title=printable(f"Precision and recall ({f['split']} split, n = {f['m']})"),
           xlabel=printable(f"recall (share of {pos} images found)"),
           ylabel=printable(f"precision (share of '{pos}' answers right)"),
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.05))
    ax.legend(fontsize=7.5, loc="lower right")
    ax.grid(alpha=0.3)

    cal = f["calibration"]
    rel = cal["reliability"]
    top, bottom = fig.add_subplot(grid[:3, 1]), fig.add_subplot(grid[3, 1])
    top.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="exact")
    full = [i for i, n in enumerate(rel["count"]) if n]
    xs = [rel["predicted"][i] for i in full]
    ys = [rel["observed"][i] for i in full]
    errs = np.array([[ys[k] - rel["observed_ci"][i][0], rel["observed_ci"][i][1] - ys[k]]
                     for k, i in enumerate(full)]).T.reshape(2, -1)
    top.errorbar(xs, ys, yerr=errs, fmt="o-", color="tab:blue", capsize=3,
                 label="each bin (95% CI)")
    top.set(title=f"Reliability: ECE {cal['ece']['value']:.3f}, Brier {cal['brier']['value']:.3f}",
            ylabel=printable(f"observed share of {pos}"), xlim=(0, 1), ylim=(-0.02, 1.02))
    top.tick_params(labelbottom=False)
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    edges = rel["edges"]
    bottom.bar(edges[:-1], rel["count"], width=np.diff(edges), align="edge", color="tab:blue",
               alpha=0.5, edgecolor="white")
    for left, right, n in zip(edges[:-1], edges[1:], rel["count"]):
        if n:
            bottom.annotate(str(n), ((left + right) / 2, n), ha="center", va="bottom",
                            fontsize=7)
    bottom.set(xlim=(0, 1), ylim=(0, max(rel["count"]) * 1.35 or 1),
               xlabel=printable(f"predicted probability of {pos}"), ylabel="images")
    if curve:
        _curve_axes(fig.add_subplot(grid[:, 2]), curve)
    _save(fig, path)


def _curve_axes(ax, c):
    """The learning curve: training and held-out accuracy with Wilson bands, the majority
    class, the shuffled labels' range."""
    pts = c["points"]
    m = [p["m"] for p in pts]
    for key, name, color in (("train", "training images", "tab:blue"),
                             ("held", f"{c['held']} split", "darkorange")):
        acc = [p[f"{key}_accuracy"] for p in pts]
        ax.plot(m, acc, "o-", color=color, markersize=4, label=printable(f"accuracy on the {name}"))
        ax.fill_between(m, [p[f"{key}_ci"][0] for p in pts], [p[f"{key}_ci"][1] for p in pts],
                        color=color, alpha=0.15)
    ax.axhline(c["baseline"], color="gray", linestyle="--", linewidth=1,
               label=f"majority class on {c['held']}: {c['baseline']:.1%}")
    sh = c.get("shuffled")
    if sh:
        ax.axhspan(sh["low"], sh["high"], color="purple", alpha=0.12,
                   label=f"shuffled labels ({len(sh['accuracies'])}): {sh['low']:.0%}-"
                         f"{sh['high']:.0%}")
    ax.set(title=f"Learning curve: {KINDS.get(c['verdict']['kind'], '')}",
           xlabel="training images", ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=7.5, loc="lower right")
    ax.grid(alpha=0.3)
