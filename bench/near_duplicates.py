"""The near-duplicate check at store time, per task, as a style's stored articles grow.

``write_briefs`` compares every new article with the newest ``STORED_ARTICLES_COMPARED`` (200) stored
articles of its style (``worker.scoring.memorisation.StoredArticles``), read once per task. Before: whole
article rows (scorecard and provenance JSON decoded) and every stored text hashed into 8-grams again in every
task; so a job's per-brief cost grew with the store until the 200 bound (a 100-brief job compares with ~50 on
average, a 10,000-brief job with 200). Now: four text columns (``Store.recent_article_texts``) and each text's
8-gram set cached per process (``memorisation.ngram_set``), so a worker hashes a stored text once.

One process, one store (PostgreSQL, a fresh schema; or SQLite), the two ways alternated at each size on the
same stored articles, median of ``--repeats`` tasks each; "new" includes its cache as a worker holds it after
its first task (the first task's hashing is printed apart):

    python bench/near_duplicates.py                          # 25, 50, 100, 200 stored articles of ~300 words
    python bench/near_duplicates.py --store sqlite --sizes 10 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from review_helpers import make_brief, scored_result  # noqa: E402 (tests/ on the path first)
from store_helpers import fresh_postgres_schema  # noqa: E402

from worker.scoring import memorisation  # noqa: E402
from worker.scoring.memorisation import StoredArticles, ngram_hashes  # noqa: E402
from worker.store import Store  # noqa: E402

STYLE = "plain-howto"  # scored_result's style


def nearest_before(store: Store, brief_id: str, text: str) -> float:
    """The check as it was: whole rows, every stored text hashed again (the largest share, as a number)."""
    stored = [
        (a.brief_id, set(ngram_hashes(a.body_markdown).tolist()))
        for a in store.list_articles(style=STYLE, limit=memorisation.STORED_ARTICLES_COMPARED)
    ]
    hashes = set(ngram_hashes(text).tolist())
    return max((len(hashes & known) / len(hashes) for other, known in stored if other != brief_id), default=0.0)


def nearest_now(store: Store, brief_id: str, text: str) -> float:
    found = StoredArticles(store).nearest(STYLE, brief_id, text)
    return found.share if found else 0.0


def article_text(number: int, words: int) -> str:
    """A distinct ~``words``-word article: a shared opening and words of its own."""
    own = " ".join(f"word{number}x{i}" for i in range(words - 40))
    return f"# Article {number}\n\n" + "Start with a clean bench and a dry cloth. " * 5 + own + "\n"


@contextmanager
def store_for(kind: str) -> Iterator[Store]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            store = Store(f"sqlite:///{folder}/bench.db")
            store.migrate()
            yield store
        return
    with fresh_postgres_schema("bench_nd") as url:
        store = Store(url)
        store.migrate()
        yield store


def timed(call: object, *args: object) -> float:
    started = time.perf_counter()
    call(*args)  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    template = scored_result(make_brief(0))
    new_text = article_text(-1, args.words)
    print(f"store {args.store}; stored articles of ~{args.words} words; median of {args.repeats} tasks (ms per task)")
    print("| stored articles | before | now | first task now (cache cold) | before / now |\n|---:|---:|---:|---:|---:|")
    with store_for(args.store) as store:
        count = 0
        for size in sorted(args.sizes):
            while count < size:
                brief = make_brief(count + 1)
                store.add_brief(brief, source="bench")
                store.save_article(
                    replace(template, brief_id=brief.brief_id, body_markdown=article_text(count, args.words))
                )
                count += 1
            assert abs(nearest_before(store, "new", new_text) - nearest_now(store, "new", new_text)) < 1e-4
            memorisation.ngram_set.cache_clear()
            cold = timed(nearest_now, store, "new", new_text)
            before, now = [], []
            for _ in range(args.repeats):
                before.append(timed(nearest_before, store, "new", new_text))
                now.append(timed(nearest_now, store, "new", new_text))
            b, n = statistics.median(before) * 1000, statistics.median(now) * 1000
            print(f"| {size} | {b:.2f} | {n:.2f} | {cold * 1000:.2f} | {b / n:.1f}x |")


if __name__ == "__main__":
    main()
