"""Numbers that agree and names that fit (issue 29): the recording interval of a long run,
the library's objects as the README shows them, inspect's figures, a resumed run's parent,
prepare's answers."""

import json
import os

import numpy as np
import pytest

from conftest import COURSE, PHOTOS, needs_course


def _nice_reference(iters):
    """print_every = auto written out: the course's 100, else the smallest of 1, 2, 5 x 10^k
    at or above iters / 20, found by walking the candidates in order."""
    candidates = sorted(k * 10 ** e for e in range(12) for k in (1, 2, 5))
    return next(c for c in candidates if c >= 100 and c * 20 >= iters)


@pytest.mark.parametrize("iters", [1, 99, 1000, 2000, 2001, 2500, 4000, 4001, 10_000, 123_457,
                                   3_000_000, 10**9])
def test_auto_recording_prints_a_screenful(iters):
    from catlr.config import print_every

    every = print_every(iters)
    assert every == _nice_reference(iters)
    lines = -(-iters // every)  # iterations 0, every, 2 every, ... below iters
    assert lines <= 20 and (iters <= 2000 or lines >= 8)
    assert print_every(2000) == 100  # the course's 20 lines, exactly


def test_a_long_run_records_on_the_grid_it_prints_and_a_resume_keeps_it(cli, small_folder):
    code, out, err = cli(["train", small_folder, "--iters", "5000", "--lr", "0.001",
                          "--name", "long"])
    assert code == 0, err
    printed = [int(l.split()[3].rstrip(":")) for l in out.splitlines()
               if l.startswith("Cost after iteration")]
    assert printed == list(range(0, 5000, 500))  # 5000 / 20 = 250, rounded up to 500
    with np.load("runs/long/model.npz") as z:
        meta = json.loads(str(z["meta"]))
        assert len(z["costs"]) == len(printed)
    assert meta["print_every"] == 500 and meta["config"]["print_every"] == 500
    assert "print_every = 500" in open("runs/long/config.toml").read()
    # 3000 more: auto would say 200 for 3000 iterations; the run's own grid is kept
    code, out, err = cli(["train", "--resume", "long", "--iters", "3000", "--name", "longer"])
    assert code == 0, err
    printed = [int(l.split()[3].rstrip(":")) for l in out.splitlines()
               if l.startswith("Cost after iteration")]
    assert printed == list(range(5000, 8000, 500))
    with np.load("runs/longer/model.npz") as z:
        assert len(z["costs"]) == 16


def test_print_every_given_or_in_the_config_is_respected(cli, small_folder, tmp_path):
    code, out, err = cli(["train", small_folder, "--iters", "5000", "--print-every", "1000",
                          "--out", tmp_path / "a.npz"])
    assert code == 0, err
    assert out.count("Cost after iteration") == 5
    config = tmp_path / "c.toml"
    config.write_text("iters = 30\nprint_every = 3\n")
    code, out, err = cli(["train", small_folder, "-c", config, "--out", tmp_path / "b.npz"])
    assert code == 0, err
    assert out.count("Cost after iteration") == 10
    code, _, err = cli(["train", small_folder, "--print-every", "often"])
    assert code == 2 and "--print-every must be an integer" in err, err


def test_the_library_takes_print_every_auto():
    from catlr import LogisticRegression

    rng = np.random.default_rng(0)
    X, Y = rng.random((5, 40)), (rng.random((1, 40)) > 0.5).astype(float)
    model = LogisticRegression(iters=4000, print_every="auto").fit(X, Y)
    assert len(model.costs_) == 20 and model.print_every == "auto"  # 4000 / 20 = 200
