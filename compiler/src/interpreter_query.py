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
    return json.dumps(
        {
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
