"""What ``copydesk corpus inspect`` reports: counts, field coverage, the profile, every skipped file by reason,
dates and authors with where they came from, code and directives, token lengths, and (``--list``) every kept
article with its id, title, date and its source, authors, words, tokens and warnings."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from worker.lab.corpus import Corpus, CorpusArticle
from worker.lab.corpus_tokens import TokenCounter, length_report

_REASON_END = re.compile(r" \(| of |: ")


def reason_family(reason: str) -> str:
    """A skip reason without its particulars: ``near-empty page (4 words, ...)`` -> ``near-empty page``."""
    return _REASON_END.split(reason, maxsplit=1)[0]


def _counts(items: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(items).items(), key=lambda item: (-item[1], item[0])))


def article_row(article: CorpusArticle, tokens: int | None) -> dict[str, Any]:
    """One kept article as ``--list`` shows it."""
    return {
        "id": article.id,
        "path": article.path,
        "title": article.brief.title,
        "date": article.date,
        "date_source": article.date_source,
        "authors": article.extra.get("authors", []),
        "words": article.words,
        "tokens": tokens,
        "code_blocks": article.code_blocks,
        "warnings": list(article.warnings),
    }


def _archive_figures(corpus: Corpus) -> dict[str, Any]:
    articles = corpus.articles
    authors = [name for a in articles for name in a.extra.get("authors", [])]
    return {
        "skipped_by_reason": _counts([reason_family(s.reason) for s in corpus.skipped]),
        "dates": {
            "found": sum(1 for a in articles if a.date),
            "sources": _counts([a.date_source for a in articles]),
        },
        "authors": {
            "articles_with_authors": sum(1 for a in articles if a.extra.get("authors")),
            "distinct": len(set(authors)),
            "names": _counts(authors),
        },
        "code_blocks": sum(a.code_blocks for a in articles),
        "directives_inlined": sum(a.inlined for a in articles),
        "placeholders": sum(a.placeholders for a in articles),
        "articles_with_warnings": sum(1 for a in articles if a.warnings),
        "warnings": sum(len(a.warnings) for a in articles),
    }


def inspect_corpus(
    corpus: Corpus,
    language: str = "en",
    *,
    count_tokens: TokenCounter | None = None,
    max_length: int = 512,
    listing: bool = False,
) -> dict[str, Any]:
    """Counts, field coverage, length distribution, readability and tone profile, archive figures: JSON-able.

    With ``count_tokens`` the report has the token-length distribution and the articles longer than
    ``max_length`` tokens; with ``listing`` it lists every kept article.
    """
    from worker.lab.stylometry import profile_texts

    profile = profile_texts([a.body for a in corpus.articles], language) if corpus.articles else None
    tokens = [count_tokens(a.body) for a in corpus.articles] if count_tokens else None
    report: dict[str, Any] = {
        "root": str(corpus.root),
        "files": corpus.files_seen,
        "articles": len(corpus.articles),
        "skipped": len(corpus.skipped),
        "words": corpus.total_words,
        "corpus_sha256": corpus.content_hash(),
        "layouts": corpus.layouts(),
        "front_matter": corpus.front_matter_formats(),
        "content_types": _counts([str(a.brief.content_type) for a in corpus.articles]),
        "coverage": corpus.coverage(),
        **_archive_figures(corpus),
        "tokens": length_report(tokens, max_length) if tokens is not None else None,
        "profile": profile,
        "skipped_files": [{"path": s.path, "reason": s.reason} for s in corpus.skipped],
    }
    if listing:
        counts = tokens or [None] * len(corpus.articles)
        report["kept_articles"] = [article_row(a, t) for a, t in zip(corpus.articles, counts, strict=True)]
    return report


def show_article(corpus: Corpus, article_id: str) -> dict[str, Any] | None:
    """The brief and the cleaned body of one kept article exactly as training sees them, or None."""
    article = next((a for a in corpus.articles if a.id == article_id), None)
    if article is None:
        return None
    return {**article_row(article, None), "brief": article.brief.content_dict(), "body": article.body}
