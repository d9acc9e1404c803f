"""What verifying shards costs readers: `read_webdataset` / `read_parquet` with `verify=True`
(presence, size and sha256 of each shard before reading it; the default) vs `verify=False`
(presence and size only), and `liftdata verify` (sha256 of every shard, nothing decoded).

Prints one JSON line: per format, seconds to read every sample (median of `--repeats` runs, both
modes interleaved in the same process on the same dataset) and the ratio verify/no-verify.
Toy samples at 256² (PNG image + shading/normal/mask maps), 4 shards.

    python benchmarks/verify_overhead.py [--samples 400] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    from liftdata.io import read_parquet, read_webdataset, write_parquet, write_webdataset
    from liftdata.io.toy import toy_samples
    from liftdata.io.verify import verify_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out: dict = {"samples": args.samples, "size": 256, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, write, read in (("webdataset", write_webdataset, read_webdataset),
                                 ("parquet", write_parquet, read_parquet)):
            d = Path(tmp) / fmt
            write(toy_samples(args.samples, 256), d, max_count=args.samples // 4, progress=False)
            times: dict[str, list[float]] = {"verify": [], "no_verify": [], "verify_only": []}
            for _ in range(args.repeats):
                times["verify"].append(_timed(lambda: sum(1 for _ in read(d, verify=True))))
                times["no_verify"].append(_timed(lambda: sum(1 for _ in read(d, verify=False))))
                times["verify_only"].append(_timed(lambda: verify_dataset(d)))
            med = {k: statistics.median(v) for k, v in times.items()}
            ext = "tar" if fmt == "webdataset" else "parquet"
            out[fmt] = {**{f"{k}_s": round(v, 4) for k, v in med.items()},
                        "ratio_verify_vs_no_verify": round(med["verify"] / med["no_verify"], 3),
                        "bytes": sum(p.stat().st_size for p in d.rglob(f"*.{ext}"))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
