"""Faults injected into running processes (issue 12): a pack truncated in place while a
process has it mapped must not crash that process; its modules are imported by the stock
importer, with at most one warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import CACHE_TAG, MODES, mode_env, run_ppyc, write

# Enough modules that the lookup table, the records, the payloads, the image directory and
# the identifier table all reach past the first page (so that a pack cut to 4096 bytes
# loses every section but the start of its lookup table), and packages whose directories
# the pack's recorded listings describe.
FILES: dict[str, str | bytes] = {
    f"m{i:03}.py": f"N = {i}\nTEXT = {f'm{i:03} ' * 80!r}\ndef name_{i}():\n    return N\n"
    for i in range(120)
}
FILES.update(
    {f"p{i}/__init__.py": f"from .leaf import LEAF\nI = {i}\n" for i in range(8)}
    | {f"p{i}/leaf.py": f"LEAF = {i} * 2\n" for i in range(8)}
)
AFTER = [f"m{i:03}" for i in range(1, 120)] + [f"p{i}" for i in range(8)]


def pack_file(root: Path) -> Path:
    return root / "__pycache__" / f"__ppyc__.{CACHE_TAG}.ppyc"


@pytest.fixture
def big(tmp_path: Path) -> Path:
    root = tmp_path / "big"
    write(root, FILES)
    result = run_ppyc("compile", root)
    assert result.code == 0, result
    import ppyc

    sections = {s["id"]: s for s in ppyc.Pack(pack_file(root)).info()["sections"]}
    assert (
        sections["INDX"]["offset"] < 4096 < sections["INDX"]["offset"] + sections["INDX"]["length"]
    )
    assert all(s["offset"] > 4096 for k, s in sections.items() if k != "INDX"), sections
    return root


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [4096, 0])
def test_pack_truncated_while_mapped(big: Path, mode: str, size: int) -> None:
    """`truncate -s 4096 PACK` between two imports of one process: no SIGBUS (exit 135),
    every later module imported by the stock importer, one warning at most."""
    pack = pack_file(big)
    code = f"""
        import json, os, sys
        import ppyc
        ppyc.install()
        sys.path.insert(0, {str(big)!r})
        import m000
        assert type(m000.__spec__.loader).__name__ == "PackLoader", m000.__spec__
        opened = ppyc.Pack({str(pack)!r})
        os.truncate({str(pack)!r}, {size})
        # The Pack API refuses too, instead of touching the mapping.
        for call in (lambda: memoryview(opened), lambda: opened.payload("m001"),
                     opened.modules, lambda: opened.find("m002")):
            try:
                call()
            except (BufferError, ValueError) as e:
                assert "cut to {size} bytes while in use" in str(e), e
            else:
                raise AssertionError(call)
        assert any("cut to {size} bytes" in p for p in opened.verify())
        import importlib
        names = {AFTER!r}
        loaders = {{}}
        for name in names:
            m = importlib.import_module(name)
            loaders[type(m.__spec__.loader).__name__] = loaders.get(
                type(m.__spec__.loader).__name__, 0) + 1
        assert all(sys.modules[f"m{{i:03}}"].N == i for i in range(120))
        assert all(sys.modules[f"m{{i:03}}"].TEXT.startswith(f"m{{i:03}} ") for i in range(120))
        assert all(sys.modules[f"p{{i}}"].LEAF == 2 * i for i in range(8))
        import p0.leaf
        print(json.dumps({{"loaders": loaders, "stats": ppyc.stats()}}))
    """
    env = {**os.environ, **mode_env(mode)}
    env.pop("PPYC_DISABLE", None)
    if mode != "marshal":
        env.pop("PPYC_MODE", None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    out = json.loads(proc.stdout.splitlines()[-1])
    # Imported by the stock path: nothing after the truncation is served by the pack.
    assert out["loaders"] == {"SourceFileLoader": len(AFTER)}, out
    packs = [p for p in out["stats"]["packs"] if p["path"] == str(pack)]
    assert len(packs) == 1 and packs[0]["served"] == 1, packs
    assert out["stats"]["served_by_mode"][mode] >= 1
    assert proc.stderr.count("ppyc: warning") <= 1, proc.stderr
