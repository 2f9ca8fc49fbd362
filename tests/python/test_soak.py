"""A bounded soak (tests/python/soak.py): fresh-process imports of the corpus, stock and ppyc
side by side with the same random hash seed, random flags and a random mode; every pair
succeeds and gives the same modules. `make soak` runs the long one (SOAK_ITERATIONS)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from conftest import BUILD, CACHE_TAG, MODES
from soak import prepare, soak


def test_soak(corpus: Path) -> None:
    iterations = int(os.environ.get("SOAK_ITERATIONS", "12"))
    seed = int(os.environ.get("SOAK_SEED", time.time_ns() % 2**31))
    prepare(sys.executable, corpus)
    report = soak(sys.executable, corpus, iterations, seed, MODES)
    out = BUILD / "soak" / f"soak-{CACHE_TAG}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    assert report["failures"] == [], (f"SOAK_SEED={seed}", report["failures"][:3])
    assert report["pairs"] == iterations
    # Modules were compared, and ppyc served them (modes alternate; -E and -I force images).
    assert report["modules_compared"] > 100 * iterations, report
    assert sum(report["served"].values()) > 100 * iterations, report
