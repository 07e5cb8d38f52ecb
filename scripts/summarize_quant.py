"""Print a markdown table of PTQ/QAT results in a folder: test accuracy mean ± std over seeds.

    python scripts/summarize_quant.py runs/quant
"""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(folder: str) -> None:
    groups: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(Path(folder).glob("*/metrics.json")):
        m = json.loads(path.read_text())
        groups[re.sub(r"-s\d+$", "", path.parent.name)].append(m)
    print("| configuration | task | model | seeds | test acc (%) | before QAT (PTQ, %) "
          "| conv-mode acc (%) | memory saved (%) | median epoch (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, ms in groups.items():
        acc = [100 * m["test_accuracy"] for m in ms]
        pre = [100 * m["ptq_test_accuracy"] for m in ms if "ptq_test_accuracy" in m]
        conv = [100 * m["test_accuracy_conv"] for m in ms if "test_accuracy_conv" in m]
        epoch = [statistics.median(m["epoch_seconds"]) for m in ms if "epoch_seconds" in m]

        def fmt(xs):
            if not xs:
                return "–"
            return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 \
                else f"{xs[0]:.2f}"

        print(f"| {name} | {ms[0]['task']} | {ms[0]['model']} | {len(ms)} | {fmt(acc)} | "
              f"{fmt(pre)} | {fmt(conv)} | {ms[0]['memory_savings_percent']:.2f} | "
              f"{statistics.median(epoch) if epoch else float('nan'):.1f} |")
    if groups:
        print(f"\ndevice: {next(iter(groups.values()))[0]['device_name']}")


if __name__ == "__main__":
    main(sys.argv[1])
