#!/usr/bin/env python3
"""The latency tail of `proxy_compare` runs, pooled over several runs.

One 10-round run of `proxy_compare` gives each path's p99 over all its calls with a 90 %
interval about 0.5-1 ms wide on a shared two-core machine: too wide to settle a target of
nginx's p99 + 0.1 ms. This pools the rounds of several runs (each run's
`--latencies FILE`), and gives for every path:

- its p50, p90, p99 and p99.9 over every call of every run;
- its p99 minus nginx's, with a 90 % interval from resampling whole rounds (a bootstrap;
  a round's paths are kept together, as they shared the machine's state);
- how its slow calls (over nginx's p99) group in time: calls whose intervals overlap form
  one group, and a group of every client at once means a stall of the proxy process or of
  the machine, not a slow call.

    target/release/proxy_compare --rounds 10 --latencies run1.csv   # and run2.csv, ...
    tests/bench/latencies.py run1.csv run2.csv ...

Standard library only.
"""

import argparse
import array
import collections
import csv
import random
import sys

BUCKET_US = 10


COLUMNS = ("path", "round", "client", "start_us", "latency_us")


def rows(files):
    """Every call of every file: (run, path, round, client, start_us, latency_us)."""
    for run, name in enumerate(files):
        try:
            with open(name, newline="") as f:
                lines = csv.reader(f)
                head = next(lines, None)
                if head is None or tuple(head) != COLUMNS:
                    sys.exit(f"{name}: not a proxy_compare --latencies file (columns {','.join(COLUMNS)})")
                for line, r in enumerate(lines, start=2):
                    try:
                        yield run, r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])
                    except (IndexError, ValueError):
                        sys.exit(f"{name}:{line}: expected {','.join(COLUMNS)}, got {r}")
        except OSError as e:
            sys.exit(f"{name}: {e}")


def load(files):
    """path -> (run, round) -> latency histogram (10 us buckets); and the number of clients."""
    hists = collections.defaultdict(dict)
    clients = 0
    for run, path, rnd, client, _, lat in rows(files):
        h = hists[path].get((run, rnd))
        if h is None:
            h = hists[path][(run, rnd)] = collections.Counter()
        h[lat // BUCKET_US] += 1
        clients = max(clients, client + 1)
    return hists, clients


def percentile(hist, q):
    n = sum(hist.values())
    rank = int(n * q)
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen > rank:
            return (b * BUCKET_US + BUCKET_US // 2) / 1e3
    return float("nan")


def pooled(hists, keys):
    total = collections.Counter()
    for k in keys:
        total.update(hists.get(k, {}))
    return total


class Rounds:
    """Each round's cumulative counts over the buckets where a p99 of any mix of rounds can
    fall (from the lowest round p99 up): a p99 of a resample is then a binary search over
    weighted sums, not a merge of histograms."""

    def __init__(self, hists, keys):
        self.lo = min(int(percentile(hists[k], 0.99) * 1e3) // BUCKET_US for k in keys)
        hi = max(max(hists[k]) for k in keys)
        self.n, self.cum = {}, {}
        for k in keys:
            h = hists[k]
            counts = array.array("q", bytes(8 * (hi - self.lo + 1)))
            below = 0
            for b, c in h.items():
                if b < self.lo:
                    below += c
                else:
                    counts[b - self.lo] += c
            for i in range(len(counts)):
                below += counts[i]
                counts[i] = below
            self.n[k], self.cum[k] = sum(h.values()), counts

    def p99(self, weights):
        """The p99 in ms of the rounds in `weights` (round -> times drawn)."""
        rank = sum(self.n[k] * w for k, w in weights.items()) * 99 // 100
        cums = [(self.cum[k], w) for k, w in weights.items()]
        lo, hi = 0, len(cums[0][0]) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if sum(c[mid] * w for c, w in cums) > rank:
                hi = mid
            else:
                lo = mid + 1
        return ((self.lo + lo) * BUCKET_US + BUCKET_US // 2) / 1e3


def groups(files, threshold_us):
    """path -> sizes of the groups of calls slower than the threshold that overlap in time
    (a second pass over the files: only the slow calls are kept)."""
    slow = collections.defaultdict(list)
    for run, path, rnd, _, start, lat in rows(files):
        if lat > threshold_us:
            slow[(path, run, rnd)].append((start, start + lat))
    sizes = collections.defaultdict(list)
    for (path, _, _), spans in slow.items():
        spans.sort()
        end, n = -1, 0
        for s, e in spans:
            if s > end and n:
                sizes[path].append(n)
                n = 0
            n += 1
            end = max(end, e)
        if n:
            sizes[path].append(n)
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="proxy_compare --latencies files, one per run")
    ap.add_argument("--draws", type=int, default=1000, help="bootstrap draws (default 1000)")
    a = ap.parse_args()
    hists, clients = load(a.files)
    if "nginx" not in hists:
        sys.exit("no nginx rows: the yardstick is missing (was the run --warden-only?)")
    keys = sorted(hists["nginx"])
    nginx_p99 = percentile(pooled(hists["nginx"], keys), 0.99)
    print(f"{len(a.files)} run(s), {len(keys)} rounds; nginx's p99 over all of them: {nginx_p99:.2f} ms\n")
    print("| path | calls | p50 | p90 | p99 | p99.9 | p99 − nginx's (90 % interval) | groups over nginx's p99 | of which all clients |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    slow_groups = groups(a.files, nginx_p99 * 1e3)
    rng = random.Random(1)
    draws = [collections.Counter(rng.choice(keys) for _ in keys) for _ in range(a.draws)]
    nginx_rounds = Rounds(hists["nginx"], keys)
    nginx_draws = [nginx_rounds.p99(w) for w in draws]
    for path, h in hists.items():
        if any(k not in h for k in keys):
            continue
        total = pooled(h, keys)
        p = {q: percentile(total, q) for q in (0.5, 0.9, 0.99, 0.999)}
        if path == "nginx":
            diff = "—"
        elif len(keys) < 3:
            # Too few rounds to resample, as in proxy_compare.
            diff = f"{p[0.99] - nginx_p99:+.2f} ms"
        else:
            mine = Rounds(h, keys)
            d = sorted(mine.p99(w) - n for w, n in zip(draws, nginx_draws))
            lo, hi = d[len(d) * 5 // 100], d[len(d) * 95 // 100 - 1]
            diff = f"{p[0.99] - nginx_p99:+.2f} ms ({lo:+.2f}–{hi:+.2f})"
        sizes = slow_groups[path]
        whole = sum(1 for s in sizes if s >= clients)
        print(
            f"| {path} | {sum(total.values())} | {p[0.5]:.2f} ms | {p[0.9]:.2f} ms | {p[0.99]:.2f} ms "
            f"| {p[0.999]:.2f} ms | {diff} | {len(sizes)} | {whole} |"
        )


if __name__ == "__main__":
    main()
