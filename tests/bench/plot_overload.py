"""Plots floodgated's in-flight limit and the fake's throughput over time from overload.py's
results: python plot_overload.py RESULTS.json OUT.png [LABEL,...]   (needs matplotlib; any venv
will do). LABELs pick the rows: c (defaults), c-nobulk (--bulk false); both by default."""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAMES = {"c": "floodgated defaults", "c-nobulk": "floodgated --bulk false"}


def main() -> None:
    results = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    capacity = results["capacity"]
    c_nominal = results["overload_config"]["capacity"]
    labels = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else set(NAMES)
    rows = [r for r in results["rows"]
            if r["label"] in NAMES and r["label"] in labels and r["variant"] in ("stall", "503")
            and r.get("series")]
    # One panel pair per (variant, label, children), first repetition only.
    seen, panels = set(), []
    for r in rows:
        k = (r["variant"], r["label"], r["children"])
        if k not in seen:
            seen.add(k)
            panels.append(r)
    cols = len(panels)
    fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols, 6.5), squeeze=False, sharex="col")
    for j, r in enumerate(panels):
        s = [x for x in r["series"] if "limit" in x]
        t = [x["t"] for x in s]
        ax = axes[0][j]
        ax.step(t, [x["limit"] for x in s], where="post", label="in-flight limit")
        ax.plot(t, [x["in_flight"] for x in s], ".", ms=3, label="requests in flight")
        ax.axhline(c_nominal, color="gray", ls="--", lw=1, label=f"server capacity C={c_nominal}")
        ax.set_title(f"{NAMES[r['label']]}\noverflow={r['variant']}, {r['children']} children", fontsize=9)
        ax.set_ylabel("requests")
        ax.legend(fontsize=7, loc="upper right")
        ax2 = axes[1][j]
        bin_s = 0.25
        offs = r.get("created_offsets", [])
        end = max(t[-1] if t else 0, offs[-1] if offs else 0)
        nb = int(end / bin_s) + 2
        counts = [0] * nb
        for o in offs:
            if o >= 0:
                counts[int(o / bin_s)] += 1
        ax2.step([i * bin_s for i in range(nb)], [c / bin_s for c in counts], where="post",
                 label="runs created / s (fake, 250 ms bins)")
        tl = r.get("timeline", [])
        off = r.get("timeline_offset_s", 0)
        ax2.step([b["t"] + off for b in tl], [b["requests"] for b in tl], where="post",
                 label="requests / s (fake timeline)", alpha=0.7)
        errs = [(b["t"] + off, b["errors"]) for b in tl if b["errors"]]
        if errs:
            ax2.plot([e[0] + 0.5 for e in errs], [e[1] for e in errs], "rx", label="errors / s")
        ax2.axhline(capacity, color="gray", ls="--", lw=1, label=f"measured capacity {capacity:.0f}/s")
        ax2.set_xlabel("seconds since the batch was posted")
        ax2.set_ylabel("per second")
        ax2.set_title(f"makespan {r['makespan_s']:.1f} s = {r['makespan_over_ideal']:.2f} x ideal",
                      fontsize=9)
        ax2.legend(fontsize=7, loc="upper right")
    fig.suptitle("floodgated against an overloaded fake Prefect: in-flight limit and throughput",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
