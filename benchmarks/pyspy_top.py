"""Where the time goes, from a py-spy raw (collapsed) profile: the top functions by self
samples and by inclusive samples, threads merged, idle frames dropped.

    python -m benchmarks.pyspy_top PROFILE.txt [--top 25] [--grep TEXT]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Frames where a thread waits rather than works (py-spy records idle threads with --idle only,
# but event-loop and pool waits still show up as the leaf of a sampled stack).
IDLE_LEAVES = ("select (selectors.py", "wait (threading.py", "_worker (concurrent/futures")
_THREAD = re.compile(r"^(process \d+:\"[^\"]*\";)?thread \([^)]*\);?")


def parse(
    path: Path, under: str | None = None
) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    self_samples: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in _THREAD.sub("", stack).split(";") if f]
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            continue
        if under is not None:
            at = next((i for i, f in enumerate(frames) if f.startswith(under)), None)
            if at is None:
                continue
            frames = frames[at:]
        total += count
        self_samples[_short(frames[-1])] += count
        packages[_package(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    return self_samples, inclusive, packages, total


def _package(frame: str) -> str:
    """The top-level package (or stdlib module) a frame's file belongs to."""
    where = frame.partition(" (")[2]
    filename = where.rsplit(":", 1)[0].rstrip(")")
    if "/" not in filename:
        return filename.removesuffix(".py") or "?"
    return filename.split("/", 1)[0]


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: lines merged per function."""
    name, _, where = frame.partition(" (")
    filename = where.rsplit(":", 1)[0].rstrip(")")
    parts = filename.split("/")
    tail = "/".join(parts[-2:]) if len(parts) > 1 else filename
    return f"{name} ({tail})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep", help="only functions whose name contains this")
    parser.add_argument("--under", help="only stacks through a frame starting with this")
    args = parser.parse_args()
    self_samples, inclusive, packages, total = parse(args.profile, args.under)
    everything = parse(args.profile)[3] if args.under else total
    print(f"{total} busy samples ({100 * total / max(everything, 1):.1f}% of all)")
    print("\n-- self time by package --")
    for package, count in packages.most_common(12):
        print(f"{100 * count / max(total, 1):6.1f}%  {package}")
    for title, counter in (("self", self_samples), ("inclusive", inclusive)):
        print(f"\n-- top {args.top} by {title} time --")
        shown = 0
        for frame, count in counter.most_common():
            if args.grep and args.grep not in frame:
                continue
            print(f"{100 * count / max(total, 1):6.1f}%  {frame}")
            shown += 1
            if shown >= args.top:
                break


if __name__ == "__main__":
    main()
