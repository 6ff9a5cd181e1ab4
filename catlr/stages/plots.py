"""Pictures: cost curves, the learning-rate sweep, the weights, a sheet of mistakes.

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
