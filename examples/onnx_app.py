"""Score photos with a model `catlr export --onnx` wrote, as `catlr predict` does.

    python examples/onnx_app.py cat.onnx photo.jpg more/*.png
    # photo.jpg  0.330929  non-cat

Needs Pillow, NumPy and onnxruntime only: copy `pixels` and `score` into an app. Each
photo becomes the graph's input exactly as catlr's decoder makes it (catlr/data/images.py),
so the probabilities equal `catlr predict`'s to 1e-6; docs/serve.md says why each step.
"""

import json
import sys

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

WHITE = (255, 255, 255)  # where a photo is transparent, and pad's bands


def pixels(path, size, fit):
    """(size, size, 3) uint8 RGB, as catlr decodes `path`."""
    with Image.open(path) as im:
        if im.format in ("JPEG", "MPO"):  # libjpeg decodes at 1/2, 1/4, 1/8 scale for free
            im.draft(None, (2 * size, 2 * size))
        im.load()
        im = ImageOps.exif_transpose(im)  # the camera's rotation
        im = rgb(im)
    w, h = im.size
    if fit == "crop" and w != h:  # the centre square
        side = min(w, h)
        im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side,
                      (h - side) // 2 + side))
    elif fit == "pad" and w != h:  # the whole photo on a white square
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), WHITE)
        canvas.paste(im, ((side - w) // 2, (side - h) // 2))
        im = canvas
    return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def rgb(im):
    """Any mode as RGB: transparency on white, 16-bit and float grays scaled (not clipped)."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        canvas = Image.new("RGBA", im.size, WHITE + (255,))
        return Image.alpha_composite(canvas, im.convert("RGBA")).convert("RGB")
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im)
        hi = float(a.max()) if a.size else 0.0
        if im.mode.startswith("I;16"):
            top = 65535.0
        elif im.mode == "F" and hi <= 1.0:
            top = 1.0
        else:  # the smallest of the 8-, 16- and 32-bit ranges that holds the image
            top = next((t for t in (255.0, 65535.0, 2147483647.0) if hi <= t), hi)
        gray = np.clip(np.rint(a.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return im.convert("RGB")  # RGB, L, 1, P, CMYK, YCbCr: Pillow's own conversions


def score(session, paths):
    """The probability of the positive class for each photo (N,)."""
    meta = session.get_modelmeta().custom_metadata_map
    size, fit = int(meta["image_size"]), meta["fit"]
    batch = np.stack([pixels(p, size, fit) for p in paths])
    name = session.get_inputs()[0].name
    probability, label = session.run(["probability", "label"], {name: batch})
    return probability, label


def main(model, *paths):
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    probability, label = score(session, paths)
    for path, p, k in zip(paths, probability, label):
        print(f"{path}  {p:.6f}  {classes[k]}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python onnx_app.py MODEL.onnx PHOTO...")
    main(*sys.argv[1:])
