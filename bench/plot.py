"""Draws bench/convergence.png from bench/results.json: for each size, bindings Ready over time
(measured, from the watch) against the lower bound implied by the simulator's limits."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results_path, out_path = sys.argv[1], sys.argv[2]
with open(results_path) as f:
    results = json.load(f)
runs = sorted(((int(n), r) for n, r in results.get("runs", {}).items() if "convergence" in r), key=lambda x: x[0])
if not runs:
    sys.exit("no run with convergence data in " + results_path)

fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 4.4), squeeze=False)
for ax, (n, r) in zip(axes[0], runs):
    c = r["convergence"]
    ready = c.get("readyTimes", [])
    xs = [0.0] + ready
    ys = [0] + list(range(1, len(ready) + 1))
    ax.step(xs, ys, where="post", color="tab:blue", lw=2, label="idbind: bindings Ready")
    bound = c.get("boundCurve", [])
    if bound:
        ax.plot([p[0] for p in bound], [p[1] for p in bound], color="tab:red", ls="--", lw=1.5,
                label="lower bound (identity creates/s)")
    lb = c.get("lowerBoundSeconds")
    if lb:
        ax.axvline(lb, color="tab:red", ls=":", lw=1)
        ax.axvline(1.1 * lb, color="tab:gray", ls=":", lw=1, label="1.1 × bound")
    scale = r.get("scale", 1)
    title = f"N = {n:,}" + (f" (limits ×{scale:g})" if scale and scale > 1 else " (ARM limits)")
    secs, ratio = c.get("seconds"), c.get("ratio")
    if isinstance(secs, (int, float)) and isinstance(ratio, (int, float)):
        title += f"\n{secs:.0f} s, bound {lb:.0f} s, ratio {ratio:.2f}"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("seconds since the first binding was applied")
    ax.set_ylabel("bindings Ready")
    ax.set_ylim(0, n * 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
fig.suptitle("idbind convergence against the bound implied by ARM's limits", fontsize=11)
fig.tight_layout()
fig.savefig(out_path, dpi=110)
print("wrote", out_path)
