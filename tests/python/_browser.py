"""Headless Chromium for tests: a page's screenshot and its DOM after its scripts ran, and
just enough PNG decoding to look at the screenshot. Standard library only."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

# Debian's package first; whatever else is on PATH after.
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")

# Without the networking switches, Chromium on a machine without network waits on refused
# connections (component updates, safe browsing, …) and the page never gets its turn.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
)

TIMEOUT = 60.0

Pixel = tuple[int, int, int]
Image = tuple[int, int, list[Pixel]]  # width, height, RGB pixels row by row
Box = tuple[int, int, int, int]  # x, y, width, height in CSS pixels (= screenshot pixels)


def chromium() -> str | None:
    """The browser's path, or None when there is none."""
    for name in CANDIDATES:
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.access(path, os.X_OK):
            return path
    return None


def render(
    html: Path, png: Path, width: int = 1400, height: int = 1000, *, suffix: str = ""
) -> str:
    """Loads `html` (with `suffix`, e.g. "?q=x#zoom=y", after its file: URL) in a fresh
    headless Chromium of `width` x `height`, writes the viewport to `png` and returns the
    DOM as it is after the page's scripts ran. One browser run does both."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("no Chromium found (looked for " + ", ".join(CANDIDATES) + ")")
    png = png.resolve()
    png.unlink(missing_ok=True)
    url = html.resolve().as_uri() + suffix
    with tempfile.TemporaryDirectory(prefix="ppyc-chromium-") as profile:
        command = [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            "--dump-dom",
            url,
        ]
        # Its own session: on a timeout the whole process group (renderer, zygote, …) goes.
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "HOME": profile},
        )
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise RuntimeError(
                f"Chromium did not finish in {TIMEOUT:.0f} s: {' '.join(command)}\n" + _tail(err)
            ) from None
    dom = out.decode("utf-8", "replace")
    if proc.returncode != 0 or not png.is_file() or "<html" not in dom:
        raise RuntimeError(
            f"Chromium failed (exit {proc.returncode}, screenshot "
            f"{'written' if png.is_file() else 'missing'}, {len(dom)} characters of DOM): "
            f"{' '.join(command)}\n" + _tail(err)
        )
    return dom


def _tail(stderr: bytes, lines: int = 40) -> str:
    text = stderr.decode("utf-8", "replace").splitlines()
    # D-Bus complaints are noise in a container: they are there on success too.
    useful = [line for line in text if "dbus" not in line.lower()] or text
    return "\n".join(useful[-lines:])


# ---- PNG -----------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_pixels(png: Path) -> Image:
    """Width, height and RGB pixels (row-major) of an 8-bit RGB or RGBA, non-interlaced PNG
    (alpha is dropped); anything else raises ValueError."""
    data = png.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{png}: not a PNG")
    pos = len(PNG_SIGNATURE)
    header: tuple[int, ...] | None = None
    chunks: list[bytes] = []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{png}: no IHDR")
    width, height, depth, colour, compression, filtering, interlace = header
    if depth != 8 or colour not in (2, 6) or compression or filtering or interlace:
        raise ValueError(
            f"{png}: unsupported PNG (bit depth {depth}, colour type {colour}, "
            f"interlace {interlace}); only 8-bit RGB/RGBA, non-interlaced"
        )
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(chunks))
    if len(raw) != height * (stride + 1):
        raise ValueError(f"{png}: {len(raw)} bytes of image data, expected {height * (stride + 1)}")
    pixels: list[Pixel] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, prev, bpp)
        pixels.extend(zip(line[0::bpp], line[1::bpp], line[2::bpp], strict=True))
        prev = line
    return width, height, pixels


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    n = len(line)
    if kind == 0:  # None
        return
    if kind == 1:  # Sub
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:  # Up: bytewise addition without carries, on the whole line at once
        low, high = _masks(n)
        a, b = int.from_bytes(line, "big"), int.from_bytes(prev, "big")
        line[:] = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(n, "big")
    elif kind == 3:  # Average
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            if pa <= pb and pa <= pc:
                pred = a
            elif pb <= pc:
                pred = b
            else:
                pred = c
            line[i] = (line[i] + pred) & 0xFF
    else:
        raise ValueError(f"unknown PNG filter type {kind}")


@functools.lru_cache(maxsize=4)
def _masks(n: int) -> tuple[int, int]:
    return int.from_bytes(b"\x7f" * n, "big"), int.from_bytes(b"\x80" * n, "big")


def _image(image: Path | Image) -> Image:
    return png_pixels(image) if isinstance(image, Path) else image


def crop(image: Path | Image, box: Box | None = None) -> list[Pixel]:
    """The pixels inside `box` (clipped to the image; the whole image when None)."""
    width, height, pixels = _image(image)
    if box is None:
        return pixels
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    out: list[Pixel] = []
    for row in range(y0, y1):
        out.extend(pixels[row * width + x0 : row * width + x1])
    return out


def non_background_fraction(
    image: Path | Image,
    box: Box | None = None,
    background: Pixel = (255, 255, 255),
    tolerance: int = 8,
) -> float:
    """The share of the pixels in `box` that differ from `background` by more than
    `tolerance` in some channel (0.0 for an empty box)."""
    region = crop(image, box)
    if not region:
        return 0.0
    br, bg, bb = background
    differ = sum(
        1
        for r, g, b in region
        if abs(r - br) > tolerance or abs(g - bg) > tolerance or abs(b - bb) > tolerance
    )
    return differ / len(region)


def distinct_colours(image: Path | Image, box: Box | None = None, min_pixels: int = 1) -> int:
    """How many different colours `box` holds, counting those of at least `min_pixels`
    pixels (a higher value ignores anti-aliased text edges)."""
    counts: dict[Pixel, int] = {}
    for pixel in crop(image, box):
        counts[pixel] = counts.get(pixel, 0) + 1
    return sum(1 for n in counts.values() if n >= min_pixels)


def colour_fraction(
    image: Path | Image, colour: Pixel, box: Box | None = None, tolerance: int = 6
) -> float:
    """The share of the pixels in `box` within `tolerance` of `colour`."""
    region = crop(image, box)
    if not region:
        return 0.0
    cr, cg, cb = colour
    near = sum(
        1
        for r, g, b in region
        if abs(r - cr) <= tolerance and abs(g - cg) <= tolerance and abs(b - cb) <= tolerance
    )
    return near / len(region)


# ---- DOM -----------------------------------------------------------------------------

VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""  # all text inside, descendants included
    _parts: list[str] = field(default_factory=list, repr=False)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.stack: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v if v is not None else "" for k, v in attrs})
        self.elements.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v if v is not None else "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                for done in self.stack[i:]:
                    done.text = "".join(done._parts)
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element._parts.append(data)

    def close(self) -> None:
        super().close()
        for element in self.stack:
            element.text = "".join(element._parts)
        self.stack.clear()


def parse_dom(dom: str) -> list[Element]:
    """Every element of `dom` in document order, with its attributes and text."""
    collector = _Collector()
    collector.feed(dom)
    collector.close()
    return collector.elements


def by_id(elements: list[Element], element_id: str) -> Element | None:
    return next((e for e in elements if e.attrs.get("id") == element_id), None)


def with_class(elements: list[Element], name: str) -> list[Element]:
    return [e for e in elements if name in e.classes]


def box_of(element: Element | None) -> Box | None:
    """The page box the report's script wrote into `data-box` ("x,y,w,h")."""
    if element is None or "data-box" not in element.attrs:
        return None
    x, y, w, h = (int(v) for v in element.attrs["data-box"].split(","))
    return x, y, w, h
