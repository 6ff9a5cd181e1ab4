"""prepare against a plain one-file-at-a-time Pillow loop, on camera-sized JPEGs.

    python bench/prepare_speed.py [--runs 5] [--size 1600x1200]

Builds 259 JPEGs (the course's train and test images upscaled to 1600 x 1200,
with grain so they compress like photos) in a temporary folder, then times, as
whole processes and alternated: `catlr prepare` and a script that does
`Image.open(p).convert('RGB').resize((64, 64))` for each file and stacks them.
Target (issue 4): catlr / plain loop <= 0.12.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from common import COURSE, alternate, catlr_cmd, compile_catlr, machine, report

PLAIN = """
import sys, os
import numpy as np
from PIL import Image
root = sys.argv[1]
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith('.jpg'))
x = np.stack([np.asarray(Image.open(p).convert('RGB').resize((64, 64))) for p in paths])
print(x.shape)
"""


def build(folder: Path, size):
    import h5py
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        with h5py.File(COURSE / f"{split}_catvnoncat.h5", "r") as f:
            x, y = f[f"{split}_set_x"][()], f[f"{split}_set_y"][()]
        for i, (img, label) in enumerate(zip(x, y)):
            d = folder / split / ("cat" if label else "non-cat")
            d.mkdir(parents=True, exist_ok=True)
            big = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC), np.int16)
            big = np.clip(big + rng.integers(-6, 7, big.shape), 0, 255).astype(np.uint8)
            Image.fromarray(big).save(d / f"{i:03d}.jpg", quality=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="1600x1200")
    args = ap.parse_args()
    compile_catlr()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build(tmp / "photos", size)
        (tmp / "plain.py").write_text(PLAIN)
        times = alternate({
            "catlr prepare": catlr_cmd("prepare", tmp / "photos", "--out", tmp / "p.h5"),
            "plain Pillow loop": [sys.executable, str(tmp / "plain.py"), str(tmp / "photos")],
        }, args.runs)
    print(f"259 JPEGs of {size[0]} x {size[1]}; {machine()}; {args.runs} alternated runs")
    r = report(times, "plain Pillow loop", "Whole process, median (ratio to the plain loop):")
    verdict = "meets" if r["catlr prepare"] <= 0.12 else "misses"
    print(f"\ncatlr prepare / plain loop = {r['catlr prepare']:.3f} ({verdict} the 0.12 target)")


if __name__ == "__main__":
    main()
