"""Images the multimodal tests draw, a reader that answers from the pixels, and hub-shaped folders.

A bar chart is drawn edge to edge (no margins, no axes, y from 0 to Y_MAX, pure blue bars), so
`read_bar_chart` can read the values back from the PNG alone: a server that answers with it proves it
received the very image the item holds. `hub_folder` writes rows as a `datasets` parquet split that
`datasets.load_dataset(<folder>)` loads like a hub dataset (Image columns included), so the hub
loading path runs without the hub.
"""

from __future__ import annotations

import io
from pathlib import Path

Y_MAX = 100.0
_BLUE = (0, 0, 255)


def bar_chart_png(values: list[float], size: tuple[int, int] = (240, 160)) -> bytes:
    """A PNG of len(values) blue bars with heights `values` (0..Y_MAX)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.bar(range(len(values)), values, width=0.6, color="#0000ff", antialiased=False)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_ylim(0, Y_MAX)
    ax.axis("off")
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def read_bar_chart(png: bytes) -> list[float]:
    """The bar values of a `bar_chart_png` image, read from its pixels (left to right)."""
    from PIL import Image

    picture = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = picture.size
    pixels = picture.load()
    blue_columns = [x for x in range(width) if any(pixels[x, y] == _BLUE for y in range(height))]
    bars: list[list[int]] = []
    for x in blue_columns:
        if bars and x == bars[-1][-1] + 1:
            bars[-1].append(x)
        else:
            bars.append([x])
    values = []
    for columns in bars:
        x = columns[len(columns) // 2]
        top = next(y for y in range(height) if pixels[x, y] == _BLUE)
        values.append(round((height - top) / height * Y_MAX, 1))
    return values


def solid_png(color: tuple[int, int, int], size: tuple[int, int] = (16, 16), fmt: str = "PNG") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def hub_folder(root: Path, split: str, rows: dict[str, list], image_columns: tuple[str, ...] = ("image",)) -> Path:
    """`rows` (column -> values; an image column holds PNG bytes or None) as a parquet split in the
    hub's layout (<root>/data/<split>-00000-of-00001.parquet); returns <root>."""
    import datasets

    features = {}
    for name, values in rows.items():
        if name in image_columns:
            features[name] = datasets.Image()
            rows[name] = [None if v is None else {"bytes": v, "path": None} for v in values]
    split_rows = datasets.Dataset.from_dict(rows)
    if features:
        split_rows = split_rows.cast(datasets.Features({**split_rows.features, **features}))
    (root / "data").mkdir(parents=True, exist_ok=True)
    split_rows.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def from_folder(dataset, folder: Path, split: str):
    """The catalog record with its hub source pointing at a local `hub_folder`."""
    source = dataset.source.model_copy(update={"id": str(folder), "config": None, "split": split})
    return dataset.model_copy(update={"source": source, "variants": []})
