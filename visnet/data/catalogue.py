"""A procedurally generated fashion catalogue, so tests and the demo need no external data.

Each "article" is a garment shape (t-shirt, dress, trousers, skirt, bag, shoe) with a texture
(plain, stripes, dots, checks) in a colour; it gets a few photos under small changes (position,
scale, rotation, lighting, a close-up now and then) and a short description such as
"red striped cotton dress". Classes (`type`) are shape x texture, e.g. "striped dress".

The output folder has the benchmark layout (`manifest.csv` + `protocol.json` + `images/`), so
everything that reads `fashion-products` reads it too:

    python -m visnet.data.catalogue --out demo/catalogue --articles-per-type 8 --photos 4
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import cv2
import numpy as np

from visnet.data.protocol import EpisodeSettings, make_protocol
from visnet.data.records import Dataset, Record

SHAPES = ("t-shirt", "dress", "trousers", "skirt", "bag", "shoe")
TEXTURES = ("plain", "striped", "dotted", "checked")
COLOURS = {
    "red": (200, 30, 40),
    "blue": (30, 60, 190),
    "green": (40, 150, 60),
    "black": (25, 25, 25),
    "yellow": (235, 200, 40),
    "pink": (235, 120, 170),
    "grey": (128, 128, 128),
    "orange": (240, 130, 30),
    "navy": (20, 30, 90),
    "brown": (120, 70, 30),
}
MATERIALS = ("cotton", "wool", "silk", "denim", "linen", "leather")

# Silhouettes as polygons in unit coordinates (x right, y down) of a 3:4 canvas.
_POLYGONS = {
    "t-shirt": [(0.30, 0.15), (0.42, 0.12), (0.50, 0.17), (0.58, 0.12), (0.70, 0.15), (0.92, 0.32),
                (0.82, 0.42), (0.72, 0.34), (0.72, 0.85), (0.28, 0.85), (0.28, 0.34), (0.18, 0.42),
                (0.08, 0.32)],
    "dress": [(0.38, 0.08), (0.44, 0.08), (0.47, 0.18), (0.53, 0.18), (0.56, 0.08), (0.62, 0.08),
              (0.64, 0.40), (0.86, 0.92), (0.14, 0.92), (0.36, 0.40)],
    "trousers": [(0.28, 0.08), (0.72, 0.08), (0.78, 0.92), (0.58, 0.92), (0.50, 0.35), (0.42, 0.92),
                 (0.22, 0.92)],
    "skirt": [(0.32, 0.22), (0.68, 0.22), (0.84, 0.78), (0.16, 0.78)],
    "bag": [(0.18, 0.38), (0.82, 0.38), (0.86, 0.85), (0.14, 0.85)],
    "shoe": [(0.10, 0.55), (0.34, 0.55), (0.44, 0.62), (0.78, 0.66), (0.92, 0.74), (0.92, 0.82),
             (0.10, 0.82)],
}


def _texture(texture: str, size: tuple[int, int], base: np.ndarray, accent: np.ndarray, scale: int,
             rng: np.random.Generator) -> np.ndarray:
    height, width = size
    canvas = np.empty((height, width, 3), np.float32)
    canvas[:] = base
    if texture == "plain":
        return canvas
    yy, xx = np.mgrid[0:height, 0:width]
    phase = rng.integers(scale)
    if texture == "striped":
        mask = ((yy + phase) // scale) % 2 == 0
    elif texture == "checked":
        mask = (((yy + phase) // scale) + ((xx + phase) // scale)) % 2 == 0
    else:  # dotted
        step = 2 * scale
        cy = (yy + phase) % step - step / 2
        cx = (xx + phase) % step - step / 2
        mask = cy**2 + cx**2 <= (scale * 0.55) ** 2
    canvas[mask] = accent
    return canvas


def render_photo(shape: str, texture: str, colour: tuple[int, int, int], pattern_scale: int,
                 size: tuple[int, int], rng: np.random.Generator, close_up: bool = False) -> np.ndarray:
    """Renders one photo (uint8 RGB, `size` = (height, width)) of an article."""
    if shape not in _POLYGONS:
        raise ValueError(f"shape must be one of {SHAPES}. Received: shape={shape!r}")
    height, width = size
    sup = 2  # supersampling for smooth edges
    big = (height * sup, width * sup)
    base = np.array(colour, np.float32)
    accent = np.clip(base * 0.35 + 255 * 0.65, 0, 255) if base.mean() < 140 else base * 0.35
    texture_image = _texture(texture, big, base, accent, max(2, pattern_scale * sup * height // 128), rng)

    points = np.array(_POLYGONS[shape], np.float32) * np.array([big[1], big[0]], np.float32)
    mask = np.zeros(big, np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255)
    if shape == "bag":  # a handle
        centre = (int(0.5 * big[1]), int(0.38 * big[0]))
        axes = (int(0.2 * big[1]), int(0.16 * big[0]))
        cv2.ellipse(mask, centre, axes, 0, 180, 360, 255, thickness=max(2, big[1] // 30))

    background = np.array([255, 255, 255], np.float32) - rng.uniform(0, 18)
    photo = np.where(mask[..., None] > 0, texture_image, background)

    # Small changes between photos of the same article: scale, shift, rotation (or a close-up).
    zoom = rng.uniform(1.6, 2.0) if close_up else rng.uniform(0.85, 1.05)
    angle = rng.uniform(-8, 8)
    centre = (big[1] / 2 + rng.uniform(-0.05, 0.05) * big[1], big[0] / 2 + rng.uniform(-0.05, 0.05) * big[0])
    matrix = cv2.getRotationMatrix2D(centre, angle, zoom)
    matrix[:, 2] += np.array([big[1] / 2, big[0] / 2]) - np.array(centre)
    photo = cv2.warpAffine(photo, matrix, (big[1], big[0]), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in background))
    photo = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
    photo = photo * rng.uniform(0.9, 1.05) + rng.normal(0, 3, photo.shape)
    return np.clip(np.round(photo), 0, 255).astype(np.uint8)


def describe(shape: str, texture: str, colour: str, material: str) -> str:
    """The article's short description, e.g. "red striped cotton dress"."""
    words = [colour] + ([] if texture == "plain" else [texture]) + [material, shape]
    return " ".join(words)


def generate_catalogue(
    out: str,
    articles_per_type: int = 8,
    photos: int = 4,
    size: tuple[int, int] = (128, 96),
    shapes: tuple[str, ...] = SHAPES,
    textures: tuple[str, ...] = TEXTURES,
    close_up_rate: float = 0.15,
    image_format: str = "jpg",
    seed: int = 0,
    episodes: EpisodeSettings | None = None,
    write_protocol: bool = True,
) -> Dataset:
    """Writes a catalogue in the benchmark layout and returns its records.

    Args:
        out: str. Output folder (created); `images/`, `manifest.csv` and `protocol.json` go there.
        articles_per_type: int. Articles per class (shape x texture), colours cycling.
        photos: int. Photos per article.
        size: (int, int). Image height and width.
        shapes, textures: which garment shapes and textures to use.
        close_up_rate: float. Share of photos that are close-ups.
        image_format: str. `jpg` or `png`.
        seed: int. The same seed writes the same catalogue.
        episodes: `EpisodeSettings` or None. Few-shot settings written into the protocol
            (default: 5-way, 1 and 5 shots, queries as many as the classes allow up to 15).
        write_protocol: bool. Write `protocol.json` (needs at least 6 classes: 5 novel for
            5-way episodes and one base class).
    """
    if articles_per_type < 1 or photos < 1:
        raise ValueError(f"articles_per_type and photos must be >= 1. Received: {articles_per_type}, {photos}")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png'. Received: {image_format!r}")
    unknown = [s for s in shapes if s not in _POLYGONS] + [t for t in textures if t not in TEXTURES]
    if unknown:
        raise ValueError(f"Unknown shapes/textures: {unknown}. Shapes: {SHAPES}; textures: {TEXTURES}.")
    n_classes = len(shapes) * len(textures)
    if write_protocol and n_classes < 6:
        raise ValueError(
            f"A protocol needs at least 6 classes (5 novel for 5-way episodes, 1 base); "
            f"{len(shapes)} shapes x {len(textures)} textures make {n_classes}. "
            "Use more shapes or textures, or write_protocol=False."
        )
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    colour_names = list(COLOURS)
    records = []
    rows = []
    for shape in shapes:
        for texture in textures:
            label = shape if texture == "plain" else f"{texture} {shape}"
            for a in range(articles_per_type):
                colour = colour_names[(a + rng.integers(len(colour_names))) % len(colour_names)]
                material = str(rng.choice(MATERIALS))
                scale = int(rng.integers(5, 10))
                article = f"{shape}-{texture}-{a:03d}".replace(" ", "")
                text = describe(shape, texture, colour, material)
                for p in range(photos):
                    photo = render_photo(shape, texture, COLOURS[colour], scale, size, rng,
                                         close_up=p > 0 and rng.random() < close_up_rate)
                    image_id = f"{article}-{p}"
                    relative = f"images/{image_id}.{image_format}"
                    bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
                    path = os.path.join(out, relative)
                    if not cv2.imwrite(path, bgr):
                        raise OSError(f"Could not write {path}")
                    rows.append([relative, image_id, article, label, shape, texture, colour, text])
                    records.append(Record(path=path, label=label, id=image_id, item_id=article, text=text,
                                          meta={"shape": shape, "texture": texture, "colour": colour}))
    with open(os.path.join(out, "manifest.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "id", "item_id", "type", "shape", "texture", "colour", "text"])
        writer.writerows(rows)
    dataset = Dataset(records, name=f"catalogue:{out}")
    if not write_protocol:
        return dataset
    per_class = articles_per_type * photos
    if episodes is None:
        queries = max(1, min(15, per_class - 5))
        episodes = EpisodeSettings(ways=(5,), shots=(1, 5) if per_class > 5 else (1,),
                                   queries_per_class=queries, count=100, seed=seed)
    protocol = make_protocol(dataset, name="generated-catalogue", label="type", episodes=episodes,
                             min_images=min(10, per_class), image_size_hw=size, seed=seed)
    protocol.save(os.path.join(out, "protocol.json"))
    return dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m visnet.data.catalogue",
        description="Write a generated fashion catalogue (benchmark layout: manifest.csv, protocol.json, images/).",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--articles-per-type", type=int, default=8,
                        help="articles per class (shape x texture; default 8)")
    parser.add_argument("--photos", type=int, default=4, help="photos per article (default 4)")
    parser.add_argument("--image-size", default="128x96", help="HEIGHTxWIDTH (default 128x96)")
    parser.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image format (default jpg)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from visnet.data.image_spec import parse_size

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        dataset = generate_catalogue(args.out, args.articles_per_type, args.photos, parse_size(args.image_size),
                                     image_format=args.format, seed=args.seed)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(dataset)} photos of {len(set(r.item_id for r in dataset))} articles "
          f"in {len(dataset.classes)} classes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
