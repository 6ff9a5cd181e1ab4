"""Start-up: what `catlr predict photo.jpg` and `catlr --help` cost against the least they must import.

    python bench/startup.py [--runs 21]

Whole processes, alternated, medians. Targets (issue 3):
    catlr predict <photo> --model m.npz   <= 2.0 x  python -c "import numpy, PIL.Image"
    catlr --help                          <= 2.0 x  python -c "import numpy"
The model is trained first on the course pair (../shared/datasets/catvnoncat).
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import COURSE, PHOTOS, alternate, catlr_cmd, compile_catlr, machine, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    compile_catlr()
    print(f"Machine: {machine()}; {args.runs} alternated runs")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "m.npz"
        subprocess.run(catlr_cmd("train", COURSE, "--out", model), check=True,
                       stdout=subprocess.DEVNULL)
        photo = PHOTOS / "cat-in-iran.jpg"
        times = alternate({
            "catlr predict <photo>": catlr_cmd("predict", photo, "--model", model),
            "python -c 'import numpy, PIL.Image'": [sys.executable, "-c", "import numpy, PIL.Image"],
            "catlr --help": catlr_cmd("--help"),
            "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
        }, args.runs)
    r1 = report({k: times[k] for k in ("catlr predict <photo>", "python -c 'import numpy, PIL.Image'")},
                "python -c 'import numpy, PIL.Image'", "predict against importing numpy and Pillow:")
    r2 = report({k: times[k] for k in ("catlr --help", "python -c 'import numpy'")},
                "python -c 'import numpy'", "--help against importing numpy:")
    a, b = r1["catlr predict <photo>"], r2["catlr --help"]
    print(f"\npredict ratio {a:.2f} ({'meets' if a <= 2.0 else 'misses'} 2.0); "
          f"--help ratio {b:.2f} ({'meets' if b <= 2.0 else 'misses'} 2.0)")


if __name__ == "__main__":
    main()
