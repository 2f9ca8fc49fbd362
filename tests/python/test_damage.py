"""Damage in every section of a real pack, seen through the import hook (issue 12): a byte
flipped at the start, middle and end of each section, with the digests left as they were
(the damage a disk or a copy does: the section digest catches it) and with the section and
header digests recomputed (the damage reaches the checks behind them: records, payloads,
images, identifiers, listings). Each time, a process with the hook imports every module
exactly as the stock importer does, with at most one warning, and when the hook warned,
`ppyc verify` reports the pack as damaged too."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from conftest import MODES, mode_env, run_ppyc, write
from ppyc import _native
from test_hook import DUMP, HOOK_TREE, MODULES, pack_path, run_py

HEADER = 256
ENTRY = 64


def blake3(data: bytes) -> bytes:
    """BLAKE3 of `data` (the Python standard library has none: the runtime's, over a
    file)."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return bytes(_native.file_digest(f.name))


def sections(data: bytes) -> list[tuple[str, int, int, int]]:
    """`(id, entry index, offset, length)` of every section (spec/FORMAT.md section 4)."""
    count = int.from_bytes(data[96:100], "little")
    out = []
    for i in range(count):
        e = HEADER + i * ENTRY
        ident = data[e : e + 4].decode("ascii")
        offset = int.from_bytes(data[e + 8 : e + 16], "little")
        length = int.from_bytes(data[e + 16 : e + 24], "little")
        out.append((ident, i, offset, length))
    return out


def reseal(data: bytearray, index: int, offset: int, length: int) -> None:
    """Recomputes the digest of section `index` and the header digest."""
    e = HEADER + index * ENTRY
    data[e + 32 : e + 64] = blake3(bytes(data[offset : offset + length]))
    count = int.from_bytes(data[96:100], "little")
    data[224:256] = blake3(bytes(data[:224]) + bytes(data[HEADER : HEADER + count * ENTRY]))


def replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@pytest.mark.parametrize("mode", MODES)
def test_damage_in_every_section_is_caught(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "lib"
    write(root, HOOK_TREE)
    args = ["--mode", "marshal"] if mode == "marshal" else []
    assert run_ppyc("compile", *args, root).code == 0
    pack = pack_path(root)
    pristine = pack.read_bytes()
    # Every module the pack holds is imported, so that damage anywhere is used.
    names = sorted(_native.Pack(str(pack)).modules())
    assert set(MODULES) <= set(names)
    code = f"NAMES = {names!r}\n" + DUMP
    stock = run_py(code, [root], hook=False)
    assert stock.returncode == 0, stock.stderr
    expected = json.loads(stock.stdout.splitlines()[-1])
    # Sanity: the undamaged pack serves every module without a word.
    clean = run_py(code, [root], env=mode_env(mode))
    assert json.loads(clean.stdout.splitlines()[-1]) == expected and "warning" not in clean.stderr
    table = sections(pristine)
    assert {s[0] for s in table} >= {"INDX", "RECS", "PAYL", "META", "DIRS"}, table
    if mode == "image":
        assert {s[0] for s in table} >= {"IMGO", "IREL", "INAM", "ILAY"}, table
    cases = 0
    warned: set[str] = set()
    for ident, index, offset, length in table:
        if length == 0:
            continue
        for at in sorted({offset, offset + length // 2, offset + length - 1}):
            for resealed in (False, True):
                damaged = bytearray(pristine)
                damaged[at] ^= 0x20
                if resealed:
                    reseal(damaged, index, offset, length)
                replace(pack, bytes(damaged))
                what = f"{ident} byte {at - offset} of {length}, digests " + (
                    "recomputed" if resealed else "as they were"
                )
                proc = run_py(code, [root], env=mode_env(mode))
                assert proc.returncode == 0, (what, proc.stderr)
                assert json.loads(proc.stdout.splitlines()[-1]) == expected, what
                warnings = proc.stderr.count("ppyc: warning")
                assert warnings <= 1, (what, proc.stderr)
                if warnings:
                    warned.add(ident)
                # Damage the hook noticed, and any damage with stale digests (a byte the
                # hook never used, say a payload that image mode does not read), is what
                # verify reports.
                if warnings or not resealed:
                    verify = run_ppyc("verify", root)
                    assert verify.code != 0, (what, proc.stderr, verify)
                cases += 1
    replace(pack, pristine)
    assert cases >= 2 * 3 * 5
    # The sections every import of this mode reads: damage in them was noticed.
    used = {"INDX", "RECS"} | ({"IMGO", "IREL", "INAM"} if mode == "image" else {"PAYL"})
    assert used <= warned, (used, warned)


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return h


def test_a_damaged_name_hash_is_damage_not_a_new_module(tmp_path: Path) -> None:
    """A flipped `name_hash` makes its module look absent from the pack; the hook checks the
    lookup table's digest before it calls the module new (spec/FORMAT.md section 8)."""
    root = tmp_path / "lib"
    write(root, HOOK_TREE)
    assert run_ppyc("compile", root).code == 0
    pack = pack_path(root)
    data = bytearray(pack.read_bytes())
    (_, _, offset, length) = next(s for s in sections(bytes(data)) if s[0] == "INDX")
    want = fnv1a(b"hmod").to_bytes(8, "little")
    at = next(e for e in range(offset, offset + length, 48) if data[e : e + 8] == want)
    data[at] ^= 0x01
    replace(pack, bytes(data))
    proc = run_py("import hmod, json, ppyc; print(json.dumps(ppyc.stats()['fallbacks']))", [root])
    assert proc.returncode == 0, proc.stderr
    assert "its lookup table (INDX) is damaged" in proc.stderr, proc.stderr
    assert proc.stderr.count("ppyc: warning") == 1
    assert json.loads(proc.stdout.splitlines()[-1]) == {"damaged": 1}
