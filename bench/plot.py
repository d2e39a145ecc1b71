"""PNG plots of a run: latency distributions per size, streamed bytes arriving over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {
    "direct": "#444444",
    "fastproxy": "#d62728",
    "relay": "#1f77b4",
    "nginx": "#2ca02c",
}


def _colour(name: str, index: int) -> str:
    palette = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e"]
    return COLOURS.get(name, palette[index % len(palette)])


def write_plots(results: dict[str, Any], raw: dict[str, Any], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    machine = f"{results['platform'].get('cpus')} CPUs, {results['settings']['mode']} run"

    latency = raw.get("latency") or {}
    if latency:
        sizes = list(latency)
        fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.8), squeeze=False)
        for ax, size in zip(axes[0], sizes, strict=True):
            ax.set_xscale("log")  # before the limits: a linear left limit of 0 hides the lines
            right = 0.0
            for i, (name, samples) in enumerate(latency[size].items()):
                ordered = sorted(s / 1000 for s in samples)
                if not ordered:
                    continue
                fraction = [(k + 1) / len(ordered) for k in range(len(ordered))]
                ax.plot(ordered, fraction, label=name, color=_colour(name, i), linewidth=1.4)
                right = max(right, ordered[int(0.99 * (len(ordered) - 1))])
            if right:
                ax.set_xlim(right=right * 1.1)  # the top 1 % is in the tables
            ax.set_title(f"{size} event + {size} response")
            ax.set_xlabel("invocation time, µs")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel("share of invocations (CDF, up to p99)")
        axes[0][-1].legend(loc="lower right", fontsize=8)
        fig.suptitle(f"Runtime loop latency, direct vs through each proxy ({machine})")
        fig.tight_layout()
        path = directory / "latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    timeline = raw.get("timeline")
    if timeline and timeline.get("paths"):
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        for i, (name, points) in enumerate(timeline["paths"].items()):
            if not points:
                continue
            xs = [0.0] + [p[0] for p in points]
            ys = [0.0] + [p[1] / 1e6 for p in points]
            ax.plot(xs, ys, label=name, color=_colour(name, i), linewidth=1.4)
        size = timeline["size"]
        ax.set_title(f"One {size // 2**20} MiB streamed response: bytes at the upstream over time")
        ax.set_xlabel("ms since the runtime wrote the first chunk")
        ax.set_ylabel("MB arrived at the Runtime API")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = directory / "streaming.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
