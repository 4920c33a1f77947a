"""Loading 10,000 rows of HAM10000 metadata and resolving their images.

Writes a HAM10000 layout with tiny JPEGs, then times the file-system walk on
its own and the whole ``load_samples`` (walk + CSV + mapping + checks); the
difference is what hardmine adds beyond the walk.

    python benchmarks/bench_data.py [--rows 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image

from hardmine.data.images import index_images
from hardmine.data.sources import load_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pixel = root / "pixel.jpg"
        Image.new("RGB", (4, 4), (120, 80, 60)).save(pixel)
        data = pixel.read_bytes()
        rows = []
        for i in range(args.rows):
            part = root / f"HAM10000_images_part_{1 + i % 2}"
            part.mkdir(exist_ok=True)
            image_id = f"ISIC_{i:07d}"
            (part / f"{image_id}.jpg").write_bytes(data)
            rows.append({"lesion_id": f"HAM_{i // 2:07d}", "image_id": image_id, "dx": "mel" if i % 10 == 0 else "nv",
                         "dx_type": "histo", "age": 50.0, "sex": "male", "localization": "back"})  # fmt: skip
        os.remove(pixel)
        pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
        index_images(root, (".jpg",))  # warm the file-system cache for both timings
        start = time.perf_counter()
        index_images(root, (".jpg",))
        walk = time.perf_counter() - start
        start = time.perf_counter()
        table, _ = load_samples(root)
        total = time.perf_counter() - start
    print(f"rows {len(table)}: file-system walk {walk:.3f} s, load_samples {total:.3f} s, "
          f"beyond the walk {total - walk:.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
