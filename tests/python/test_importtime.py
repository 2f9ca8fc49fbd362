"""`ppyc importtime` end to end (spec/IMPORTTIME.md): runs, report, outputs, errors."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, run_ppyc, write

IT_TREE: dict[str, str | bytes] = {
    "itpkg/__init__.py": "from . import alpha, beta\nimport json\n",
    "itpkg/alpha.py": "import itpkg.deep.leaf\nA = [i * i for i in range(1000)]\n",
    "itpkg/beta.py": "import itstale\nB = {'x': 1}\n",
    "itpkg/deep/__init__.py": "",
    "itpkg/deep/leaf.py": "LEAF = tuple(range(3))\n",
    "itstale.py": "S = 1\n",
    "itfail.py": (
        "import sys\nsys.stderr.write('about to fail\\n')\n"
        "raise RuntimeError('it failed on purpose')\n"
    ),
    "itmain/__init__.py": "",
    "itmain/__main__.py": (
        "import sys\nimport itpkg\n"
        "if sys.argv[1:] != ['--flag', 'x']:\n    raise SystemExit(f'bad argv {sys.argv}')\n"
    ),
}
SERVED = ["itpkg", "itpkg.alpha", "itpkg.beta", "itpkg.deep", "itpkg.deep.leaf"]


@pytest.fixture
def itlib(tmp_path: Path) -> Iterator[Path]:
    """A packed tree (itstale.py edited after packing), with ppyc enabled for this
    interpreter while the test runs."""
    root = tmp_path / "itlib"
    write(root, IT_TREE)
    compiled = run_ppyc("compile", root)
    assert compiled.code == 0, compiled
    (root / "itstale.py").write_text("S = 2  # edited after packing\n")
    enabled = run_ppyc("enable")
    assert enabled.code == 0, enabled
    try:
        yield root
    finally:
        disabled = run_ppyc("disable")
        assert disabled.code == 0, disabled


def importtime(root: Path, *args: str | os.PathLike[str]) -> Result:
    return run_ppyc("importtime", *args, env={"PYTHONPATH": str(root)})


def walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        yield node
        yield from walk(node["children"])


def find(nodes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for node in walk(nodes):
        if node["name"] == name and not node["cached"]:
            return node
    raise AssertionError(f"{name} not in the tree")


def test_json_report(itlib: Path, tmp_path: Path) -> None:
    trace_file = tmp_path / "trace.json"
    result = importtime(itlib, "itpkg", "--runs", "3", "--json", "--trace", trace_file)
    assert result.code == 0, result
    report = json.loads(result.out)
    assert report["schema"] == "ppyc-importtime/1"
    meta = report["meta"]
    assert meta["target"] == {
        "kind": "c",
        "value": "import itpkg",
        "label": "import itpkg",
        "args": [],
    }
    assert meta["runs"] == 3 and meta["warmup"] == 1
    assert meta["python"]["version"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert meta["python"]["cache_tag"] == sys.implementation.cache_tag
    assert meta["ppyc"]["hook_enabled"] is True and meta["ppyc"]["mode"] == "marshal"
    assert meta["machine"]["cpus"] >= 1 and meta["command"][1:3] == ["importtime", "itpkg"]

    wall = report["wall"]
    for side in ("stock", "ppyc", "ratio"):
        s = wall[side]
        assert len(s["samples"]) == 3
        assert 0 < s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
    pairs = [p / s for s, p in zip(wall["stock"]["samples"], wall["ppyc"]["samples"], strict=True)]
    assert sorted(pairs)[1] == pytest.approx(wall["ratio"]["median"])

    rows = {m["name"]: m for m in report["modules"]}
    for name in SERVED:
        row = rows[name]
        assert row["stock"] is not None and row["stock"]["cum_us"] >= row["stock"]["self_us"]
        p = row["ppyc"]
        assert p["served"] is True and p["reason"] is None, row
        phases = p["phases"]
        assert phases["find_us"] > 0 and phases["unmarshal_us"] > 0, row
        assert sum(phases.values()) == pytest.approx(max(p["self_us"], sum(phases.values())))
    assert rows["itstale"]["ppyc"]["served"] is False
    assert rows["itstale"]["ppyc"]["reason"] == "stale"
    # ppyc's own start-up shows on its side only; builtins are named as such.
    assert rows["ppyc._hook"]["stock"] is None and rows["ppyc._hook"]["ppyc"] is not None
    assert any(r["ppyc"] and r["ppyc"]["reason"] == "builtin module" for r in rows.values())
    # Sorted by self time, largest first.
    keys = [
        max((r["stock"] or {}).get("self_us", 0), (r["ppyc"] or {}).get("self_us", 0))
        for r in report["modules"]
    ]
    assert keys == sorted(keys, reverse=True)

    for side in ("stock", "ppyc"):
        tree = report["sides"][side]["tree"]
        root = find(tree, "itpkg")
        # (On the ppyc side, the first module served loads `ppyc._native` under it.)
        children = [c["name"] for c in root["children"] if not c["name"].startswith("ppyc.")]
        assert children == ["itpkg.alpha", "itpkg.beta", "json"], children
        assert find(root["children"], "itpkg.deep.leaf")["cum_us"] >= 0
        assert [c["name"] for c in find(tree, "itpkg.beta")["children"]] == ["itstale"]
        for node in walk(tree):
            assert node["cum_us"] >= node["self_us"] >= 0
    ppyc_root = find(report["sides"]["ppyc"]["tree"], "itpkg")
    assert ppyc_root["served"] is True and ppyc_root["phases"]["unmarshal_us"] > 0
    assert find(report["sides"]["stock"]["tree"], "itpkg")["served"] is None
    assert report["phases"]["unmarshal_us"] > 0
    assert report["memory"] is None

    trace = json.loads(trace_file.read_text())
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    for pid in (1, 2):
        names = {e["name"] for e in events if e["pid"] == pid}
        assert {"itpkg", "itpkg.alpha", "itstale"} <= names
    alpha = next(e for e in events if e["pid"] == 2 and e["name"] == "itpkg.alpha")
    pkg = next(e for e in events if e["pid"] == 2 and e["name"] == "itpkg")
    assert pkg["ts"] <= alpha["ts"] and alpha["ts"] + alpha["dur"] <= pkg["ts"] + pkg["dur"] + 1
    assert alpha["args"]["served"] is True


def test_table_and_dash_m(itlib: Path) -> None:
    result = importtime(itlib, "-m", "itmain", "--runs", "2", "--top", "1000", "--", "--flag", "x")
    assert result.code == 0, result
    out = result.out
    assert out.startswith("ppyc importtime: -m itmain\n")
    for needle in (
        "wall time",
        "ratio ppyc/stock, pair by pair: median",
        "modules by self time",
        "itpkg.alpha",
        "not served by ppyc:",
        "stale: 1",
        "builtin module:",
    ):
        assert needle in out, (needle, out)
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("itpkg.deep.leaf "))
    assert line.rstrip().endswith("yes"), line


def test_memory_with_concurrent_processes(itlib: Path) -> None:
    result = importtime(itlib, "-c", "import itpkg", "--runs", "1", "--processes", "2", "--json")
    assert result.code == 0, result
    memory = json.loads(result.out)["memory"]
    assert memory["processes"] == 2
    for side in ("stock", "ppyc"):
        m = memory[side]
        assert m["rss_bytes"] > 1_000_000 and 0 < m["pss_bytes"] <= m["rss_bytes"]
        assert m["private_bytes"] + m["shared_bytes"] == m["rss_bytes"]
        assert m["pss_total_bytes"] >= m["pss_bytes"]
    # Only ppyc maps packs (the itlib pack, at least).
    assert memory["stock"]["pack_rss_bytes"] == 0
    assert memory["ppyc"]["pack_rss_bytes"] > 0


def test_failing_target_shows_its_stderr(itlib: Path) -> None:
    result = importtime(itlib, "itfail", "--runs", "1")
    assert result.code == 1, result
    assert "the target failed on the stock side" in result.err
    assert "RuntimeError: it failed on purpose" in result.err
    assert "about to fail" in result.err


def test_nothing_served_is_an_error(itlib: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    write(bare, {"nopackmod.py": "X = 1\n"})
    result = run_ppyc(
        "importtime", "nopackmod", "--runs", "1", env={"PYTHONPATH": f"{bare}:{itlib}"}
    )
    assert result.code == 1, result
    assert "ppyc served none of the modules `import nopackmod` imports" in result.err
    assert "ppyc compile" in result.err


def test_not_enabled_and_not_installed(tmp_path: Path) -> None:
    status = run_ppyc("status", "--json")
    assert json.loads(status.out)["enabled"] == [], "ppyc must be disabled here"
    result = run_ppyc("importtime", "json", "--runs", "1")
    assert result.code == 1, result
    assert "the ppyc hook is not enabled for" in result.err
    assert "ppyc enable --python" in result.err
    # An interpreter where ppyc cannot be imported: this one without site-packages.
    wrapper = tmp_path / "python-without-site"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    result = run_ppyc("importtime", "json", "--python", wrapper)
    assert result.code == 1, result
    assert "ppyc is not installed for" in result.err and "ModuleNotFoundError" in result.err
    result = run_ppyc("importtime", "json", "--python", tmp_path / "no-such-python")
    assert result.code == 1 and "cannot run" in result.err, result


def test_usage_errors() -> None:
    assert run_ppyc("importtime").code == 2
    assert run_ppyc("importtime", "a", "-c", "pass").code == 2
    assert run_ppyc("importtime", "-c", "pass", "--runs", "0").code == 2
    bad = run_ppyc("importtime", "not a module")
    assert bad.code == 2 and "is not a module name" in bad.err


def test_html_report_renders_in_chromium(itlib: Path, tmp_path: Path) -> None:
    from _browser import (
        box_of,
        by_id,
        chromium,
        colour_fraction,
        distinct_colours,
        non_background_fraction,
        parse_dom,
        png_pixels,
        render,
        with_class,
    )

    assert chromium() is not None, "Chromium is missing: `make test` installs Debian's chromium"
    page = tmp_path / "report.html"
    result = importtime(itlib, "-c", "import itpkg", "--runs", "2", "--html", page)
    assert result.code == 0, result
    assert f"HTML report: {page}" in result.out
    html = page.read_text()
    assert "<script src" not in html and "https://" not in html

    png = tmp_path / "report.png"
    elements = parse_dom(render(page, png))
    body = next(e for e in elements if e.tag == "body")
    status = by_id(elements, "status")
    assert body.attrs.get("data-rendered") == "1", status
    nodes = with_class(elements, "node")
    assert status is not None and status.text.strip() == f"rendered {len(nodes)} nodes"
    by_side: dict[str, set[str]] = {"stock": set(), "ppyc": set()}
    for node in nodes:
        by_side[node.attrs["data-side"]].add(node.attrs["data-name"])
    for side in ("stock", "ppyc"):
        assert set(SERVED) | {"itstale", "json"} <= by_side[side], (side, by_side[side])
    assert "ppyc._hook" in by_side["ppyc"] and "ppyc._hook" not in by_side["stock"]
    # Labels: wide nodes show their name (at least the workload's own package, on both sides).
    labelled = {(n.attrs["data-side"], n.text.strip()) for n in nodes if n.text.strip()}
    assert ("stock", "itpkg") in labelled and ("ppyc", "itpkg") in labelled, labelled
    for node in nodes:  # a label is the node's own name (CSS shortens it, not the text)
        assert node.text.strip() in ("", node.attrs["data-name"]), node
    served = {n.attrs["data-name"] for n in nodes if "served" in n.classes}
    assert set(SERVED) <= served
    stale = next(
        n for n in nodes if n.attrs["data-name"] == "itstale" and n.attrs["data-side"] == "ppyc"
    )
    assert "not-served" in stale.classes
    meta = by_id(elements, "meta")
    assert meta is not None and sys.implementation.cache_tag in meta.text

    # The screenshot: both icicles drawn, in their colours.
    image = png_pixels(png)
    stock_box = box_of(by_id(elements, "icicle-stock"))
    ppyc_box = box_of(by_id(elements, "icicle-ppyc"))
    assert stock_box is not None and ppyc_box is not None
    assert stock_box[1] + stock_box[3] <= image[1] and ppyc_box[1] + ppyc_box[3] <= image[1]
    assert non_background_fraction(image, stock_box) > 0.2
    assert non_background_fraction(image, ppyc_box) > 0.2
    stock_colour = (0x86, 0xAB, 0xD3)
    assert colour_fraction(image, stock_colour, stock_box) > 0.1
    assert colour_fraction(image, stock_colour, ppyc_box) < 0.01
    assert distinct_colours(image, ppyc_box, min_pixels=50) >= 3

    # Search from the address: matches counted on both sides.
    elements = parse_dom(render(page, tmp_path / "search.png", suffix="?q=itpkg"))
    found = by_id(elements, "search-result")
    assert found is not None
    assert int(found.attrs["data-stock-matches"]) >= len(SERVED)
    assert int(found.attrs["data-ppyc-matches"]) >= len(SERVED)
