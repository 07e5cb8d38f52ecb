"""Print a markdown table of the runs in a folder: accuracy per mode, mean ± std over seeds.

    python scripts/summarize_runs.py runs/foundation
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(folder: str) -> None:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in sorted(Path(folder).iterdir()):
        if (run / "metrics_recurrent.json").exists():
            conv = json.loads((run / "metrics_conv.json").read_text())
            rec = json.loads((run / "metrics_recurrent.json").read_text())
            train = json.loads((run / "metrics.json").read_text())
            groups[(conv["task"], conv["model"])].append(
                {"seed": conv["seed"], "conv": 100 * conv["test_accuracy"],
                 "rec": 100 * rec["test_accuracy"], "params": conv["parameters"],
                 "epoch_s": statistics.median(train["epoch_seconds"]),
                 "device": train["device_name"]})

    def fmt(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 \
            else f"{xs[0]:.2f}"

    print("| task | model | params | seeds | conv test acc (%) | recurrent test acc (%) "
          "| max abs(conv − rec) (points) | per-seed conv | median epoch (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (task, model), rows in groups.items():
        diff = max(abs(r["conv"] - r["rec"]) for r in rows)
        seeds = ", ".join(f"{r['conv']:.2f}" for r in rows)
        print(f"| {task} | {model} | {rows[0]['params']:,} | {len(rows)} | "
              f"{fmt([r['conv'] for r in rows])} | {fmt([r['rec'] for r in rows])} | {diff:.2f} "
              f"| {seeds} | {statistics.median(r['epoch_s'] for r in rows):.1f} |")
    print(f"\ndevice: {next(iter(groups.values()))[0]['device']}" if groups else "no finished runs")


if __name__ == "__main__":
    main(sys.argv[1])
