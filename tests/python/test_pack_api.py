"""`ppyc.Pack` from Python: lookups and the read-only buffer over the mapping."""

from __future__ import annotations

import gc
import marshal
import subprocess
import sys
from pathlib import Path

import ppyc
import pytest
from conftest import CACHE_TAG, run_ppyc, write


@pytest.fixture
def pack(tmp_path: Path) -> ppyc.Pack:
    root = tmp_path / "site"
    write(root, {"m.py": "X = 41 + 1\n", "p/__init__.py": "", "p/q.py": "Q = 'q'\n"})
    assert run_ppyc("compile", root).code == 0
    return ppyc.Pack(root / "__pycache__" / f"__ppyc__.{CACHE_TAG}.ppyc")


def test_find_and_payload_span(pack: ppyc.Pack) -> None:
    source_path, is_package, size, mtime_ns, pyc_flags, digest, index = pack.find("m")
    assert (source_path, is_package, size, pyc_flags, len(digest)) == ("m.py", False, 11, 0, 32)
    assert 0 <= index < len(pack)
    assert mtime_ns > 0
    assert pack.find("p")[:2] == ("p/__init__.py", True)
    assert pack.find("nope") is None
    start, end = pack.payload_span("p.q")
    assert bytes(memoryview(pack)[start:end]) == pack.payload("p.q")
    with pytest.raises(KeyError):
        pack.payload_span("nope")
    assert pack.cache_tag == CACHE_TAG and pack.optimize == 0
    assert pack.path is not None and pack.path.endswith(".ppyc")


def test_buffer_is_read_only_and_keeps_the_pack_alive(pack: ppyc.Pack) -> None:
    view = memoryview(pack)
    assert view.readonly and view.format == "B" and view.ndim == 1
    assert bytes(view[:8]) == b"\x89PPYC\r\n\x1a"
    with pytest.raises(TypeError):
        view[0] = 0
    start, end = pack.payload_span("m")
    code_view = view[start:end]
    del pack, view
    gc.collect()
    namespace: dict[str, object] = {}
    exec(marshal.loads(code_view), namespace)
    assert namespace["X"] == 42


def test_buffer_under_the_debug_allocator(pack: ppyc.Pack) -> None:
    code = f"""
import gc, marshal, ppyc
p = ppyc.Pack({pack.path!r})
views = [memoryview(p)[slice(*p.payload_span(n))] for n in p.modules() for _ in range(50)]
del p
gc.collect()
ns = {{}}
exec(marshal.loads(views[-1]), ns)
views.clear()
gc.collect()
print("ok")
"""
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONMALLOC": "debug", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr
