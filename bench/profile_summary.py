"""Summarise a py-spy ``--format raw`` profile: where the samples are, per thread.

    python bench/profile_summary.py profile.txt [--top 25] [--match ykcproxy]

Prints, for each thread, its share of samples, the functions with the most
*self* samples, and the ``--match`` functions with the most *inclusive*
samples (a function counted once per stack it appears in).
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict


def main() -> None:
    """Print the summary."""
    p = argparse.ArgumentParser()
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--match", default="ykcproxy")
    args = p.parse_args()
    self_by: dict[str, Counter[str]] = defaultdict(Counter)
    incl_by: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    with open(args.profile) as f:
        for line in f:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            thread = frames[0] if frames[0].startswith(("thread", "process")) else "main"
            frames = [fr for fr in frames if not fr.startswith(("thread", "process"))]
            totals[thread] += count
            if frames:
                self_by[thread][frames[-1]] += count
            for fr in set(frames):
                if args.match in fr:
                    incl_by[thread][fr] += count
    grand = sum(totals.values())
    print(f"{grand} samples")
    for thread, n in totals.most_common():
        print(f"\n== {thread}: {n} samples ({100 * n / grand:.1f}%)")
        print("-- self")
        for fr, c in self_by[thread].most_common(args.top):
            print(f"{100 * c / grand:6.2f}%  {fr}")
        print(f"-- inclusive ({args.match})")
        for fr, c in incl_by[thread].most_common(args.top):
            print(f"{100 * c / grand:6.2f}%  {fr}")


if __name__ == "__main__":
    main()
