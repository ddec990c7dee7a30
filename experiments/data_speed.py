"""Data-loading speed of a data config: training examples made per second in one process.

    python experiments/data_speed.py experiment=demo
    python experiments/data_speed.py experiment=general data.root=../shared/data data.augment.enabled=false

Prints the set-up time (reading and decoding the corpora), training examples/s (one process, as
one data-loader worker makes them), the CPU time per example (which varies less than seconds on a
shared machine) and a fingerprint of the validation mixtures, which must not change when only
training augmentations change.
"""

from __future__ import annotations

import hashlib
import sys
import time

from hydra.utils import instantiate

from sepgan.training.config import compose_config


def main(overrides: list[str], examples: int = 400) -> None:
    cfg = compose_config([*overrides, "data.num_workers=0"])
    start = time.perf_counter()
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    setup_s = time.perf_counter() - start
    train = datamodule.datasets["train"]
    train[0]  # first-touch costs (imports, filter designs) are not the steady rate
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(examples):
        train[i % len(train)]
    rate = examples / (time.perf_counter() - start)
    cpu_ms = (time.process_time() - cpu) / examples * 1000
    val = datamodule.datasets["val"]
    digest = hashlib.sha1()
    for i in range(len(val)):
        digest.update(val[i]["mixture"].numpy().tobytes())
    segment = cfg.data.segment_seconds
    print(f"{' '.join(overrides) or '(defaults)'}: set-up {setup_s:.1f} s; {rate:.1f} training examples/s "
          f"({rate * segment:.0f} s of audio per s), {cpu_ms:.2f} ms CPU each, over {examples}; "
          f"validation fingerprint {digest.hexdigest()[:12]}")


if __name__ == "__main__":
    main(sys.argv[1:])
