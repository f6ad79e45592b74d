"""Benchmark of the extraction methods side by side: precision, recall, F1 and CPU ms/page, in one run.

Every method of `tasks.filter.extraction` (trafilatura ones also without their fallback extractors) on the
labelled pages of trafilatura's evaluation set (the 990 pages of bench-990-pages.warc.gz), on all pages,
the tuning part and the held-out part (split by URL hash); then on this project's own labels of English
pages of the wget sample WARCs (benchmarks/labels, a different kind of page: homepages, FAQ, newsletter).
Cost is CPU time of the extracting thread, so it compares methods fairly on a busy machine; the last column
is the cost relative to FineWeb's extraction.

    .venv/bin/python -m benchmarks.extraction [--shared ../shared/data] [--limit N] [--labels l.json --warc x ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fineforge.tasks.filter.extraction import COMBINED_METHOD, EXTRACTION_METHODS
from fineforge.tasks.filter.extraction_eval import SPLITS, MethodResult, evaluate, load_labelled_pages, results_table

ROOT = Path(__file__).resolve().parents[1]
# Labels written for this project: English homepages, a blog post, a faculty page, FAQ and newsletter pages.
OWN_LABELS = Path(__file__).resolve().parent / "labels" / "wget-2024-pages.json"


def EVALDATA(shared: Path) -> Path:  # noqa: N802 - reads as the constant it is
    return shared / "html" / "trafilatura-evaldata.json"


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in
                        enumerate(zip(row, widths, strict=True))))  # fmt: skip


def run(warcs: list[Path], labels: Path, limit: int | None) -> list[MethodResult]:
    pages, missing = load_labelled_pages(warcs, labels)
    pages = pages[:limit] if limit else pages
    names = ", ".join(w.name for w in warcs)
    print(f"\n{len(pages)} labelled pages of {labels.name} in {names} ({missing} labelled URLs not in them)")
    variants = [(m, True) for m in EXTRACTION_METHODS] + [(m, False) for m in EXTRACTION_METHODS if m != "resiliparse"]
    per_variant = [evaluate(pages, method, fallbacks) for method, fallbacks in variants]
    results = [by_split[split] for split in SPLITS for by_split in per_variant]
    print_table(results_table(results))
    return results


def summary(results: list[MethodResult]) -> None:
    """F1 and cost of the default against trafilatura's default and FineWeb's precision setting."""
    best = {(r.method, r.fallbacks, r.split): r for r in results}
    for split in SPLITS:
        ours = best[(COMBINED_METHOD, True, split)]
        line = [f"{split:9s} {COMBINED_METHOD}: F1 {ours.scores.f1:.3f}"]
        for other in ("trafilatura", "fineweb"):
            theirs = best[(other, True, split)]
            line.append(f"vs {other} {ours.scores.f1 - theirs.scores.f1:+.3f} F1, "
                        f"cost x{ours.cpu_ms_per_page / theirs.cpu_ms_per_page:.2f}")  # fmt: skip
        print("; ".join(line))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--warc", type=Path, nargs="+", help="WARC(s) with the labelled pages of --labels")
    parser.add_argument("--labels", type=Path, help="labels in trafilatura's format, instead of the two sets")
    parser.add_argument("--limit", type=int, help="only the first N labelled pages (quick runs)")
    args = parser.parse_args()
    if args.labels:
        summary(run(args.warc, args.labels, args.limit))
        return 0
    summary(run([args.shared / "warc" / "bench-990-pages.warc.gz"], EVALDATA(args.shared), args.limit))
    wget = [args.shared / "warc" / f"wget-2024-sample-000{i}.warc.gz" for i in (0, 1)]
    run(wget, OWN_LABELS, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
