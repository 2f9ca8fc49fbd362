# Describes the running interpreter for ppyc: run in-process by the ppyc command (which lives
# inside the interpreter it packs for) or as `python -I -B interpreter_query.py` by tests.
import json
import sys


def query() -> str:
    import importlib.machinery
    import importlib.util
    import os
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    site_packages = []
    for key in ("purelib", "platlib"):
        p = paths.get(key)
        if p and os.path.realpath(p) not in [os.path.realpath(s) for s in site_packages]:
            site_packages.append(p)
    # Directories `.pth` files of the site directories put on sys.path (path-based editable
    # installs, `.egg` directories), as site.addpackage() adds them: each a sys.path entry
    # that holds installed code, packed by `ppyc compile` with no arguments too.
    site_dirs = list(site_packages)
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user:
        site_dirs.append(user)
    known = {os.path.realpath(p) for p in [*site_dirs, paths["stdlib"]]}
    on_path = {os.path.realpath(p) for p in sys.path if p}
    pth_roots: list[str] = []
    for sitedir in site_dirs:
        try:
            names = sorted(n for n in os.listdir(sitedir) if n.endswith(".pth"))
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(sitedir, name), encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for line in lines:
                if not line.strip() or line.startswith(("#", "import ", "import\t")):
                    continue
                entry = os.path.join(sitedir, line.rstrip())
                real = os.path.realpath(entry)
                if os.path.isdir(entry) and real in on_path and real not in known:
                    known.add(real)
                    pth_roots.append(os.path.abspath(entry))
    return json.dumps(
        {
            "pth_roots": pth_roots,
            "implementation": sys.implementation.name,
            "executable": sys.executable,
            "hexversion": sys.hexversion,
            "cache_tag": sys.implementation.cache_tag,
            "pyc_magic": list(importlib.util.MAGIC_NUMBER),
            "optimize": sys.flags.optimize,
            "extension_suffixes": list(importlib.machinery.EXTENSION_SUFFIXES),
            "site_packages": site_packages,
            "user_site": site.getusersitepackages() if site.ENABLE_USER_SITE else None,
            "stdlib": paths["stdlib"],
            "platstdlib": paths.get("platstdlib", paths["stdlib"]),
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "dont_write_bytecode": sys.dont_write_bytecode,
            "pycache_prefix": sys.pycache_prefix,
        }
    )


if __name__ == "__main__":
    sys.stdout.write(query())
