#!/usr/bin/env python3
"""Hit ratio of LCache's store policies against libCacheSim's, on the same trace files.

Generates the traces (seeded, so every run writes the same files), replays each through
libCacheSim's W-TinyLFU, S3-FIFO, SIEVE and ARC (PyPI package `libcachesim`, C simulator
behind Python bindings) and through LCache's policies (the `replay` bench of lcache-core, which
reads the same files), then prints one markdown table. Run it through `scripts/hit-ratio.sh`.

Traces, over a key space of KEYS keys (ids 1..=KEYS, popularity order shuffled):
- zipf-A: REQUESTS requests drawn Zipf(A), A in 0.7 / 0.99 / 1.2;
- zipf-A+scan: the same, cut in blocks of SCAN_EVERY requests, with a one-pass scan of SCAN_LEN
  keys never requested before or after in the middle of every block;
- loop: the keys 1..=L requested in order, over and over, L = 1.1 x the cache's entries (the
  worst case of LRU; one trace per cache size);
- shift: Zipf(0.99) whose hot set moves every SHIFT_EVERY requests: each phase, every key's rank
  improves by SHIFT_BY and the SHIFT_BY hottest keys of the last phase become the coldest (a
  popular set that suddenly dies, the case where long frequency history misleads).

Every request is counted (the hit ratio is over the whole trace, compulsory misses included),
every object has the same size, and a cache of C entries is C objects of size 1 in libCacheSim
and C x (the bench's per-entry charge) bytes in LCache, so both hold exactly C entries.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

SEED = 0x1CAC4E
KEYS = 100_000
REQUESTS = 1_000_000
SCAN_EVERY = 100_000
SCAN_LEN = 20_000
SHIFT_EVERY = 50_000
SHIFT_BY = 2_000
SIZES_PERCENT = (1, 10)
ZIPF = (0.7, 0.99, 1.2)

# oracleGeneral: u32 clock time, u64 object id, u32 object size, i64 next access (unused here).
RECORD = np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])


def zipf_ranks(rng, alpha, count):
    """`count` ranks in 0..KEYS drawn Zipf(alpha) (rank 0 the most popular)."""
    weights = np.arange(1, KEYS + 1, dtype=np.float64) ** -alpha
    cdf = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(count)), KEYS - 1)


def with_scans(ids):
    """`ids` cut in blocks of SCAN_EVERY with a scan of fresh keys in the middle of each."""
    parts, next_fresh = [], KEYS + 1
    for start in range(0, len(ids), SCAN_EVERY):
        block = ids[start : start + SCAN_EVERY]
        half = len(block) // 2
        parts += [block[:half], np.arange(next_fresh, next_fresh + SCAN_LEN), block[half:]]
        next_fresh += SCAN_LEN
    return np.concatenate(parts)


def traces():
    """(name, cache entries or None for every size, ids) for every trace."""
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(KEYS) + 1  # rank -> key id
    out = []
    for alpha in ZIPF:
        ids = perm[zipf_ranks(rng, alpha, REQUESTS)]
        out.append((f"zipf-{alpha}", None, ids))
        out.append((f"zipf-{alpha}+scan", None, with_scans(ids)))
    for pct in SIZES_PERCENT:
        entries = KEYS * pct // 100
        loop_len = entries * 11 // 10
        out.append(("loop", entries, np.arange(REQUESTS) % loop_len + 1))
    ranks = zipf_ranks(rng, 0.99, REQUESTS)
    phase = np.arange(REQUESTS) // SHIFT_EVERY
    out.append(("shift", None, perm[(ranks + phase * SHIFT_BY) % KEYS]))
    return out


def write_trace(path, ids):
    records = np.zeros(len(ids), dtype=RECORD)
    records["t"] = np.arange(len(ids))
    records["id"] = ids
    records["size"] = 1
    records["next"] = -1
    records.tofile(path)


def libcachesim_ratios(path, entries):
    import libcachesim as lcs

    policies = {
        "W-TinyLFU": lambda: lcs.WTinyLFU(entries),
        "S3-FIFO": lambda: lcs.S3FIFO(entries),
        "SIEVE": lambda: lcs.Sieve(entries),
        "ARC": lambda: lcs.ARC(entries),
    }
    ratios = {}
    for name, make in policies.items():
        reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
        miss_ratio, _ = make().process_trace(reader)
        ratios[name] = 1.0 - miss_ratio
    return ratios


def lcache_ratios(manifest, cargo_args):
    """Runs the replay bench on the manifest; returns {(trace, entries): {policy: ratio}}."""
    # cargo runs a bench from its package's directory: pass an absolute path.
    manifest = os.path.abspath(manifest)
    cmd = ["cargo", "bench", "-q", "-p", "lcache-core", "--bench", "replay", *cargo_args, "--", manifest]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stderr}")
    out = {}
    for line in result.stdout.splitlines():
        if not line.startswith("ratio\t"):
            continue
        _, trace, entries, policy, ratio = line.split("\t")
        out.setdefault((trace, int(entries)), {})[policy] = float(ratio)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="target/hit-ratio", help="where trace files go")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    rows = []  # (trace, pct, entries, path)
    for name, only_entries, ids in traces():
        for pct in SIZES_PERCENT:
            entries = KEYS * pct // 100
            if only_entries is not None and only_entries != entries:
                continue
            file = name if only_entries is None else f"{name}-{entries}"
            path = os.path.join(args.dir, f"{file}.oracleGeneral.bin")
            if not os.path.exists(path) or os.path.getsize(path) != len(ids) * RECORD.itemsize:
                write_trace(path, ids)
            rows.append((name, pct, entries, path))
        print(f"trace {name}: {len(ids)} requests", file=sys.stderr)

    manifest = os.path.join(args.dir, "manifest.tsv")
    with open(manifest, "w") as f:
        for name, _pct, entries, path in rows:
            f.write(f"{name}\t{entries}\t{os.path.abspath(path)}\n")
    print("replaying through LCache (cargo bench --bench replay)", file=sys.stderr)
    ours = lcache_ratios(manifest, [])

    results = []
    for name, pct, entries, path in rows:
        print(f"replaying {name} ({pct}%) through libCacheSim", file=sys.stderr)
        theirs = libcachesim_ratios(path, entries)
        results.append({"trace": name, "pct": pct, "entries": entries, "lcache": ours[(name, entries)], "libcachesim": theirs})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print_table(results)


def print_table(results):
    lcs_names = list(results[0]["libcachesim"].keys())
    our_names = list(results[0]["lcache"].keys())
    default = our_names[0]
    header = ["trace", "size"] + [f"{n} (lcache)" for n in our_names] + lcs_names + [f"{default} - best"]
    print("| " + " | ".join(header) + " |")
    print("|---|---:|" + "---:|" * (len(header) - 2))
    margins = []
    for r in results:
        best = max(r["libcachesim"].values())
        margin = r["lcache"][default] - best
        margins.append(margin)
        cells = [r["trace"], f"{r['pct']}%"]
        cells += [f"{100 * r['lcache'][n]:.2f}" for n in our_names]
        cells += [mark(r["libcachesim"][n], best) for n in lcs_names]
        cells.append(f"{100 * margin:+.2f}")
        print("| " + " | ".join(cells) + " |")
    avg = sum(margins) / len(margins)
    print(f"\nhit ratios in %; best of libCacheSim's in bold; last column: {default} minus that best, in points.")
    print(f"average margin {100 * avg:+.2f} points, worst {100 * min(margins):+.2f}, best {100 * max(margins):+.2f}")


def mark(ratio, best):
    text = f"{100 * ratio:.2f}"
    return f"**{text}**" if ratio == best else text


if __name__ == "__main__":
    main()
