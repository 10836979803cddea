"""Record the resized, center-cropped pixels of the bundled photos that the caches are computed from.

    python scripts/record_photo_pixels.py [--force]

Writes pathlib_pw/photo_pixels/photos_uint8.npz (every photo at 224 and 64 px) and provenance.json.
It refuses to overwrite pixels that differ from the stored ones unless --force: every cache under
data/results was computed from the stored pixels, and new pixels invalidate them all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torchvision

from pathlib_pw.data import PHOTO_PIXELS_FILE, PHOTOS, load_photo, photo_pixel_key, photo_pixels

SIZES = (224, 64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite pixels that differ from the stored ones")
    args = parser.parse_args()
    new = {photo_pixel_key(n, s): photo_pixels(n, s, shipped=False).numpy() for s in SIZES for n in PHOTOS}
    if PHOTO_PIXELS_FILE.is_file():
        with np.load(PHOTO_PIXELS_FILE) as old:
            changed = sorted(k for k in new if k not in old.files or not np.array_equal(old[k], new[k]))
        if changed and not args.force:
            print(f"refusing: {len(changed)} arrays would change ({', '.join(changed[:5])} ...); --force to overwrite")
            return 1
    provenance = {
        "transform": "pathlib_pw.imagenet.resize_crop: shorter side to round(size*256/224), bilinear, "
        "antialias=True, on the uint8 photo; center crop to size; stored as (3, size, size) uint8",
        "sizes": list(SIZES),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "photo_sha256": {n: hashlib.sha256(load_photo(n).tobytes()).hexdigest() for n in PHOTOS},
    }
    PHOTO_PIXELS_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=PHOTO_PIXELS_FILE.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **new)
        os.replace(tmp, PHOTO_PIXELS_FILE)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    (PHOTO_PIXELS_FILE.parent / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"wrote {PHOTO_PIXELS_FILE} ({PHOTO_PIXELS_FILE.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
