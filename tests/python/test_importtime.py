"""`ppyc importtime` end to end (spec/IMPORTTIME.md): runs, report, outputs, errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ppyc
import pytest
from conftest import IMAGES, MODE, MODES, Result, mode_env, run_ppyc, write

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
# The phases that make a code object in each mode (spec/IMPORTTIME.md section 3).
LOAD_PHASES = {
    "image": ("relocate", "bind"),
    "marshal": ("unmarshal",),
    "mixed": ("unmarshal", "relocate", "bind"),
    None: (),
}


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


def side_env(root: Path | str, mode: str | None = None) -> dict[str, str]:
    """The target's environment: `root` on its path; `mode` forced, else the default (a
    PPYC_MODE of the caller's environment does not count)."""
    return {"PYTHONPATH": str(root), "PPYC_MODE": "", **mode_env(mode or MODE)}


def importtime(root: Path | str, *args: str | os.PathLike[str], mode: str | None = None) -> Result:
    return run_ppyc("importtime", *args, env=side_env(root, mode))


def target_stats(root: Path | str, code: str, mode: str | None = None) -> dict[str, Any]:
    """`ppyc.stats()` of the target itself, run as `ppyc importtime` runs it: what it used
    (taken before `json` is imported, which packs of the stdlib would serve too)."""
    tail = "\nimport ppyc as _p\n_s = _p.stats()\nimport json\nprint(json.dumps(_s))"
    proc = subprocess.run(
        [sys.executable, "-c", code + tail],
        capture_output=True,
        text=True,
        env={**os.environ, **side_env(root, mode)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    stats: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return stats


def used_mode(stats: dict[str, Any]) -> str | None:
    """The mode of the modules a process served (`meta.ppyc.mode`, spec/IMPORTTIME.md):
    the one of them all, `mixed`, or None when it served nothing."""
    used = [mode for mode, n in stats["served_by_mode"].items() if n]
    return None if not used else used[0] if len(used) == 1 else "mixed"


def walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        yield node
        yield from walk(node["children"])


def find(nodes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for node in walk(nodes):
        if node["name"] == name and not node["cached"]:
            return node
    raise AssertionError(f"{name} not in the tree")


@pytest.mark.parametrize("mode", MODES)
def test_json_report(itlib: Path, tmp_path: Path, mode: str) -> None:
    # What the target really uses, from its own `ppyc.stats()`: itlib's modules in image
    # mode by default where the interpreter loads images, in marshal mode under
    # PPYC_MODE=marshal or without images; packs of the stdlib (if any) add their own: a
    # marshal-only pack, or one whose images this build refuses, makes the target `mixed`
    # (while `stats()["mode"]`, the mode of the packs, may still say `image`).
    truth = target_stats(itlib, "import itpkg", mode)
    used = used_mode(truth)
    assert truth["served_by_mode"][mode] >= len(SERVED), truth
    assert used == mode or (mode == "image" and used == "mixed"), truth

    trace_file = tmp_path / "trace.json"
    result = importtime(itlib, "itpkg", "--runs", "3", "--json", "--trace", trace_file, mode=mode)
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
    assert meta["ppyc"]["hook_enabled"] is True and meta["ppyc"]["mode"] == used
    assert meta["machine"]["cpus"] >= 1 and meta["command"][1:3] == ["importtime", "itpkg"]

    wall = report["wall"]
    for side in ("stock", "ppyc", "ratio"):
        s = wall[side]
        assert len(s["samples"]) == 3
        assert 0 < s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
    pairs = [p / s for s, p in zip(wall["stock"]["samples"], wall["ppyc"]["samples"], strict=True)]
    assert sorted(pairs)[1] == pytest.approx(wall["ratio"]["median"])

    loading = LOAD_PHASES[mode]
    not_loading = {"unmarshal", "relocate", "bind"} - set(loading)
    rows = {m["name"]: m for m in report["modules"]}
    for name in SERVED:
        row = rows[name]
        assert row["stock"] is not None and row["stock"]["cum_us"] >= row["stock"]["self_us"]
        p = row["ppyc"]
        assert p["served"] is True and p["reason"] is None and p["mode"] == mode, row
        phases = p["phases"]
        for phase in ("find", "read", *loading):
            assert phases[phase + "_us"] > 0, (phase, row)
        for phase in not_loading:
            assert phases[phase + "_us"] == 0, (phase, row)
        # exec and the rest: self time minus every loading phase (never below 0).
        before = sum(v for k, v in phases.items() if k != "exec_us")
        assert phases["exec_us"] == pytest.approx(max(0.0, p["self_us"] - before), abs=0.01)
    assert rows["itstale"]["ppyc"]["served"] is False
    assert rows["itstale"]["ppyc"]["reason"] == "stale"
    assert rows["itstale"]["ppyc"]["mode"] is None and rows["itstale"]["stock"] is not None
    # ppyc's own start-up shows on its side only; builtins are named as such.
    assert rows["ppyc._native"]["stock"] is None and rows["ppyc._native"]["ppyc"] is not None
    assert any(r["ppyc"] and r["ppyc"]["reason"] == "builtin module" for r in rows.values())
    # Sorted by self time, largest first.
    keys = [
        max((r["stock"] or {}).get("self_us", 0), (r["ppyc"] or {}).get("self_us", 0))
        for r in report["modules"]
    ]
    assert keys == sorted(keys, reverse=True)
    # The report's mode is that of its served modules.
    modes = {r["ppyc"]["mode"] for r in rows.values() if r["ppyc"] and r["ppyc"]["served"]}
    assert modes == ({"image", "marshal"} if used == "mixed" else {used}), modes

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
    assert ppyc_root["served"] is True and ppyc_root["mode"] == mode
    assert ppyc_root["phases"] == rows["itpkg"]["ppyc"]["phases"]
    stock_root = find(report["sides"]["stock"]["tree"], "itpkg")
    assert stock_root["served"] is None and stock_root["mode"] is None
    totals = report["phases"]
    for phase in loading:
        served_sum = sum(rows[n]["ppyc"]["phases"][phase + "_us"] for n in SERVED)
        assert totals[phase + "_us"] >= served_sum - 1e-6 > 0, (phase, totals)
    for phase in ("unmarshal", "relocate", "bind"):
        assert (totals[phase + "_us"] > 0) == (phase in LOAD_PHASES[used]), (phase, totals)
    assert report["memory"] is None

    trace = json.loads(trace_file.read_text())
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    for pid in (1, 2):
        names = {e["name"] for e in events if e["pid"] == pid}
        assert {"itpkg", "itpkg.alpha", "itstale"} <= names
    alpha = next(e for e in events if e["pid"] == 2 and e["name"] == "itpkg.alpha")
    pkg = next(e for e in events if e["pid"] == 2 and e["name"] == "itpkg")
    assert pkg["ts"] <= alpha["ts"] and alpha["ts"] + alpha["dur"] <= pkg["ts"] + pkg["dur"] + 1
    assert alpha["args"]["served"] is True and alpha["args"]["mode"] == mode
    assert trace["otherData"]["mode"] == used


def test_table_and_dash_m(itlib: Path) -> None:
    # The mode this target uses (`-m` as the memory rounds run it).
    used = used_mode(
        target_stats(
            itlib,
            "import runpy, sys\nsys.argv[1:] = ['--flag', 'x']\n"
            "runpy.run_module('itmain', run_name='__main__', alter_sys=True)",
        )
    )
    assert used == MODE or (MODE == "image" and used == "mixed"), used
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
    # (In a mixed report, a served module says how it was loaded.)
    served = ["yes", f"({MODE})"] if used == "mixed" else ["yes"]
    assert line.split()[-len(served) :] == served, line
    # The phases of the mode the target used, and only those.
    assert f", ppyc {ppyc.__version__} ({used} mode); " in out.splitlines()[1], out
    phases = next(ln for ln in out.splitlines() if "ppyc phases" in ln).strip()
    names = [part.split()[0] for part in phases.split(": ", 1)[1].split(" · ")]
    assert phases.startswith(f"ppyc phases ({used} mode): "), phases
    assert names == ["find", "check", "read", *LOAD_PHASES[used], "exec"], phases
    header = next(ln for ln in out.splitlines() if ln.strip().startswith("module "))
    columns = ["module", "stock", "ppyc", "ratio", "find", "check", "read"]
    assert header.split() == [*columns, *LOAD_PHASES[used], "exec", "served"], header
    # A served module has a number (µs) in every phase column.
    cells = line.split()[: -len(served)]
    assert len(cells) == len(header.split()) - 1, (header, line)
    assert all(v.isdigit() for v in cells[4:]), line


@pytest.mark.skipif(not IMAGES, reason="this interpreter has no image mode")
def test_mixed_mode(itlib: Path, tmp_path: Path) -> None:
    """An image pack and a marshal-only pack in one target: both kinds of phases."""
    other = tmp_path / "marshal-lib"
    write(other, {"itmarshal.py": "M = [i for i in range(100)]\n"})
    compiled = run_ppyc("compile", "--mode", "marshal", other)
    assert compiled.code == 0, compiled
    path = f"{itlib}{os.pathsep}{other}"
    code = "import itpkg, itmarshal"
    truth = target_stats(path, code)
    assert truth["mode"] == used_mode(truth) == "mixed", truth
    served = truth["served_by_mode"]
    assert served["image"] >= len(SERVED) and served["marshal"] >= 1, truth

    result = importtime(path, "-c", code, "--runs", "2", "--json")
    assert result.code == 0, result
    report = json.loads(result.out)
    assert report["meta"]["ppyc"]["mode"] == "mixed"
    rows = {m["name"]: m["ppyc"] for m in report["modules"]}
    for name, mode in [("itmarshal", "marshal"), *((n, "image") for n in SERVED)]:
        assert rows[name]["served"] is True and rows[name]["mode"] == mode, (name, rows[name])
        phases = rows[name]["phases"]
        for phase in ("unmarshal", "relocate", "bind"):
            assert (phases[phase + "_us"] > 0) == (phase in LOAD_PHASES[mode]), (name, phases)
    for phase in ("unmarshal", "relocate", "bind"):
        assert report["phases"][phase + "_us"] > 0, report["phases"]

    result = importtime(path, "-c", code, "--runs", "1", "--top", "1000")
    assert result.code == 0, result
    lines = result.out.splitlines()
    phases = next(ln for ln in lines if "ppyc phases" in ln).strip()
    assert phases.startswith("ppyc phases (mixed mode): find "), phases
    assert " · unmarshal " in phases and " · relocate " in phases and " · bind " in phases
    header = next(ln for ln in lines if ln.strip().startswith("module ")).split()
    loading = ["unmarshal", "relocate", "bind"]
    assert header[4:] == ["find", "check", "read", *loading, "exec", "served"], header
    row = next(ln for ln in lines if ln.strip().startswith("itmarshal ")).split()
    assert row[-2:] == ["yes", "(marshal)"], row
    row = next(ln for ln in lines if ln.strip().startswith("itpkg.alpha ")).split()
    assert row[-2:] == ["yes", "(image)"], row


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
    assert "ppyc._native" in by_side["ppyc"] and "ppyc._native" not in by_side["stock"]
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
    used = used_mode(target_stats(itlib, "import itpkg"))
    assert f"{used} mode" in meta.text, meta.text

    # The phases of the target's mode: in the phase card (its bar has a segment for each
    # loading phase), the legend and the module table's columns; no other loading phase.
    assert body.attrs.get("data-mode") == used
    shown = ["find", "check", "read", *LOAD_PHASES[used], "exec"]
    card = by_id(elements, "phases")
    assert card is not None and card.attrs.get("data-phases") == " ".join(shown), card
    assert f"ppyc phases ({used} mode)" in card.text, card.text
    segments = {e.attrs["data-phase"] for e in with_class(elements, "seg")}
    assert set(LOAD_PHASES[used]) | {"find", "exec"} <= segments <= set(shown), segments
    legend = by_id(elements, "legend")
    assert legend is not None and legend.text.startswith("stock" + "".join(shown)), legend
    headers = [e.attrs["data-key"] for e in elements if e.tag == "th" and "data-key" in e.attrs]
    assert headers == ["name", "stock", "ppyc", "ratio", *shown, "served"], headers

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
    # The table lists the matches, each served module with its mode.
    table_rows = [e for e in elements if e.tag == "tr" and "module-row" in e.classes]
    row_modes = {r.attrs["data-name"]: r.attrs.get("data-mode") for r in table_rows}
    assert {name: row_modes.get(name) for name in SERVED} == dict.fromkeys(SERVED, MODE)
