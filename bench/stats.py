"""Percentiles of pgbench per-transaction logs (column 3: latency in us)."""
import sys

def percentiles(paths, points=(50, 95, 99)):
    lat = sorted(int(line.split()[2]) for p in paths for line in open(p) if line.strip())
    if not lat:
        return {p: float("nan") for p in points}
    return {p: lat[min(len(lat) - 1, int(len(lat) * p / 100))] / 1000.0 for p in points}

if __name__ == "__main__":
    r = percentiles(sys.argv[1:])
    print(" ".join(f"{r[p]:.3f}" for p in (50, 95, 99)))
