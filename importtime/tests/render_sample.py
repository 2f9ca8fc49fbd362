"""Fill the `--html` report template with the sample report: `render_sample.py OUT.html [JSON]`.

For previewing `importtime/assets/report.html` without building ppyc, and for the browser
test. The substitution is the one `importtime/src/render/html.rs` makes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent / "assets" / "report.html"
SAMPLE = HERE / "data" / "sample_report.json"
PLACEHOLDER = "/*PPYC_DATA*/null"


def fill(template: str, document: object) -> str:
    """The page for a report document: its JSON, made safe inside <script>, in place of the
    template's one placeholder."""
    if template.count(PLACEHOLDER) != 1:
        raise ValueError(f"the template must hold {PLACEHOLDER!r} exactly once")
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    safe = text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return template.replace(PLACEHOLDER, safe, 1)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(f"usage: {Path(argv[0]).name} OUT.html [REPORT.json]", file=sys.stderr)
        return 2
    source = Path(argv[2]) if len(argv) == 3 else SAMPLE
    document = json.loads(source.read_text(encoding="utf-8"))
    page = fill(TEMPLATE.read_text(encoding="utf-8"), document)
    Path(argv[1]).write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
