#!/usr/bin/env python3
"""Plots one or several tramontane runs into one PNG.

    scripts/plot.py RUN [RUN...] [-o out.png] [--title TEXT]

RUN is a run directory (run.dir of `tramontane train`, holding metrics.jsonl) or a metrics.jsonl
itself. Four panels, one line per run (the legend names its directory): training loss (solid) and
validation loss (markers) against the step, the learning rate, the gradient norm, and the MoE
layers' expert load: the busiest expert's assignments over the mean (1 = balanced), averaged over
the layers (solid) and the worst layer (dotted). The keys are those of metrics.jsonl
(trainer/metrics/metrics.h). Lines that are not JSON (the last one after a kill -9) are skipped.

Exit status: 0 written; 2 bad input (a missing run, a metrics file without the keys), with one
`error:` line; 1 when matplotlib is missing (scripts/setup.sh installs python3-matplotlib).
"""
import argparse
import json
import math
import os
import sys

REQUIRED = ("step", "loss", "lr", "grad_norm")


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def metrics_path(run):
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        fail(f"{run}: no such run (a run directory holding metrics.jsonl, or the file itself)")
    return path


def label_of(run):
    run = os.path.normpath(run)
    if os.path.basename(run) == "metrics.jsonl":
        run = os.path.dirname(run) or "."
    return os.path.basename(os.path.abspath(run))


def number(value):
    """A finite float, or NaN (NaN and Inf are written as null)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def read_run(run):
    path = metrics_path(run)
    lines = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue  # a damaged line
            if isinstance(j, dict) and isinstance(j.get("step"), int):
                lines.append(j)
    if not lines:
        fail(f"{path}: no metrics lines (one JSON object with \"step\" per training step)")
    missing = [k for k in REQUIRED if not any(k in j for j in lines)]
    if missing:
        fail(f"{path}: no line has {', '.join(missing)} (the keys of trainer/metrics/metrics.h)")
    steps = [j["step"] for j in lines]
    loads = [j.get("expert_max_load") for j in lines]
    val = [(j["step"], number(j["val_loss"])) for j in lines if "val_loss" in j]
    return {
        "label": label_of(run),
        "step": steps,
        "loss": [number(j.get("loss")) for j in lines],
        "lr": [number(j.get("lr")) for j in lines],
        "grad_norm": [number(j.get("grad_norm")) for j in lines],
        "val_step": [s for s, _ in val],
        "val_loss": [v for _, v in val],
        "load_step": [s for s, l in zip(steps, loads) if isinstance(l, list) and l],
        "load_mean": [sum(map(number, l)) / len(l) for l in loads if isinstance(l, list) and l],
        "load_worst": [max(map(number, l)) for l in loads if isinstance(l, list) and l],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directory or metrics.jsonl")
    parser.add_argument("-o", "--output", default="plot.png", help="the PNG (default plot.png)")
    parser.add_argument("--title", help="the figure's title (default: the runs' names)")
    args = parser.parse_args()

    runs = [read_run(r) for r in args.runs]
    labels = [r["label"] for r in runs]
    if len(set(labels)) < len(labels):  # same directory names: tell them apart by their paths
        for r, path in zip(runs, args.runs):
            r["label"] = os.path.normpath(path)

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("error: plot.py needs matplotlib (apt-get install python3-matplotlib; "
              "scripts/setup.sh installs it)", file=sys.stderr)
        sys.exit(1)

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), dpi=100, sharex=True)
    (ax_loss, ax_lr), (ax_norm, ax_load) = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(runs):
        c = colors[i % len(colors)]
        ax_loss.plot(r["step"], r["loss"], color=c, lw=1.2, label=f"{r['label']} train")
        if r["val_step"]:
            ax_loss.plot(r["val_step"], r["val_loss"], color=c, ls="--", marker="o", ms=4,
                         label=f"{r['label']} validation")
        ax_lr.plot(r["step"], r["lr"], color=c, lw=1.2, label=r["label"])
        ax_norm.plot(r["step"], r["grad_norm"], color=c, lw=1.0, label=r["label"])
        if r["load_step"]:
            ax_load.plot(r["load_step"], r["load_mean"], color=c, lw=1.2,
                         label=f"{r['label']} mean over layers")
            ax_load.plot(r["load_step"], r["load_worst"], color=c, lw=0.8, ls=":",
                         label=f"{r['label']} worst layer")

    ax_loss.set(title="loss", ylabel="loss (nats/token)")
    ax_lr.set(title="learning rate", ylabel="lr")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax_norm.set(title="gradient norm (before clipping)", ylabel="global L2 norm", xlabel="step")
    ax_load.set(title="expert load: busiest expert / mean (1 = balanced)", ylabel="max load",
                xlabel="step")
    if not any(r["load_step"] for r in runs):
        ax_load.text(0.5, 0.5, "no MoE layers (no expert_max_load)", ha="center", va="center",
                     transform=ax_load.transAxes)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(args.title or "tramontane: " + ", ".join(r["label"] for r in runs))
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        fail(f"{args.output}: no such directory {out_dir}")
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
