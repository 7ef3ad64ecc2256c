"""Draws what the dashboard's panels showed for the test's run, from Prometheus's data."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (panel title, title on the picture, unit label)
PANELS = [
    ("Launches by outcome", "Launches by outcome (/s)", None),
    ("Prefect requests by endpoint", "Prefect requests by endpoint (/s)", None),
    ("Prefect error ratio by status class", "Prefect error ratio by status class", None),
    ("In flight vs limit", "In flight vs adaptive limit", None),
    ("Token bucket", "Token bucket level (--rate 40/s)", None),
    ("Retries by reason", "Retries by reason (/s)", None),
    ("Children by Prefect state", "Children by Prefect state", None),
    ("Ready queue and oldest pending", "Ready queue / oldest pending age", None),
    ("Progress", "Batch progress", None),
    ("Launch rate", "Batch launch rate (/s, last minute)", None),
    ("ETA", "Batch ETA (s)", None),
    ("Retry budget", "Retry budget", None),
]


def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def draw(results, t0, path: Path, batch_id):
    fig, axes = plt.subplots(4, 3, figsize=(15, 13), constrained_layout=True)
    for ax, (title, label, _) in zip(axes.flat, PANELS):
        for (ptitle, _ref), (fmt, series) in sorted(results.items()):
            if ptitle != title:
                continue
            for s in series:
                xs = [float(t) - t0 for t, _ in s["values"]]
                ys = [float(v) for _, v in s["values"]]
                name = legend(fmt, s["metric"])
                if batch_id in name:
                    name = "batch " + batch_id[:8]
                ax.plot(xs, ys, label=name, linewidth=1.2)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("seconds into the run", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if labels:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle("floodgate dashboard, one faulty run: 400 children, fake Prefect with 12% 503s, "
                 "4% 429s (Retry-After 1 s), 8% failing children; --rate 40/s, no bulk; "
                 "scraped every second", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
