#!/usr/bin/env python3
"""Pillow (with numpy where Pillow has no operation) doing the steps of each portrait
style of our local studio on the same photo: decode, resize to 1,024 px on the long
side (bilinear, as our Triangle filter), the style's filters, JPEG encode at quality
75. One JSON line per style on stdout, like studio-bench.

    python3 bench/studio/pillow_styles.py PHOTO [--runs N]

Stained glass has no Voronoi in Pillow: a median-cut quantisation, a mode filter and
an edge pass stand in for it (equivalent steps, not the same picture).
"""

import io
import json
import statistics
import sys
import time

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps


def load(path):
    image = Image.open(path)
    image = ImageOps.exif_transpose(image).convert("RGB")
    image.thumbnail((1024, 1024), Image.Resampling.BILINEAR)
    return image


def encode(image):
    out = io.BytesIO()
    image.save(out, "JPEG", quality=75)
    return out.getvalue()


def watercolor(image):
    soft = image.filter(ImageFilter.GaussianBlur(5.7))
    washed = ImageOps.posterize(soft, 3)
    washed = Image.blend(soft, washed, 0.6)
    edges = ImageOps.grayscale(image.filter(ImageFilter.GaussianBlur(1))).filter(ImageFilter.FIND_EDGES)
    pooled = ImageChops.multiply(washed, ImageOps.invert(edges).convert("RGB"))
    return Image.blend(pooled, Image.new("RGB", image.size, (255, 255, 255)), 0.18)


def pencil_sketch(image):
    gray = ImageOps.grayscale(image)
    blurred = ImageOps.invert(gray).filter(ImageFilter.GaussianBlur(11))
    g = np.asarray(gray, dtype=np.float32)
    b = np.asarray(blurred, dtype=np.float32)
    dodge = np.minimum(g * 255.0 / (256.0 - b), 255.0).astype(np.uint8)
    return Image.fromarray(dodge).convert("RGB")


def pop_art(image):
    palettes = [
        [(20, 20, 90), (240, 40, 120), (255, 230, 0)],
        [(10, 70, 40), (255, 120, 0), (120, 230, 255)],
        [(80, 0, 80), (0, 200, 180), (255, 255, 160)],
        [(120, 0, 0), (40, 90, 255), (255, 200, 220)],
    ]
    w, h = image.size
    small = ImageOps.grayscale(image.resize((w // 2, h // 2), Image.Resampling.BILINEAR))
    values = sorted(small.tobytes())
    low, high = values[len(values) // 3], values[2 * len(values) // 3]
    bands = small.point(lambda v: 0 if v < low else (128 if v < high else 255))
    out = Image.new("RGB", (w, h))
    for i, (dark, mid, light) in enumerate(palettes):
        panel = ImageOps.colorize(bands, black=dark, white=light, mid=mid)
        out.paste(panel, ((i % 2) * (w // 2), (i // 2) * (h // 2)))
    return out


def oil_paint(image):
    # Pillow has no Kuwahara filter; a mode filter is its classic "oil paint".
    return ImageOps.autocontrast(image.filter(ImageFilter.ModeFilter(9)))


def pixel_art(image):
    w, h = image.size
    scale = max(w, h) / 48
    small = image.resize((max(1, round(w / scale)), max(1, round(h / scale))), Image.Resampling.BILINEAR)
    small = small.quantize(colors=10, method=Image.Quantize.MEDIANCUT, kmeans=10).convert("RGB")
    return small.resize((w, h), Image.Resampling.NEAREST)


def stained_glass(image):
    panes = image.quantize(colors=48, method=Image.Quantize.MEDIANCUT).convert("RGB").filter(ImageFilter.ModeFilter(7))
    lead = ImageOps.invert(ImageOps.grayscale(panes).filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 8 else 0))
    return ImageChops.multiply(panes, lead.convert("RGB"))


STYLES = {
    "watercolor": watercolor,
    "pencil_sketch": pencil_sketch,
    "pop_art": pop_art,
    "oil_paint": oil_paint,
    "pixel_art": pixel_art,
    "stained_glass": stained_glass,
}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    for name, style in STYLES.items():
        times = []
        size = 0
        for _ in range(runs):
            started = time.perf_counter()
            size = len(encode(style(load(path))))
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        print(json.dumps({"engine": "pillow", "style": name, "runs": runs, "median_ms": statistics.median(times),
                          "min_ms": times[0], "max_ms": times[-1], "output_bytes": size}), flush=True)


if __name__ == "__main__":
    main()
