"""The scoring stage: measure a Markdown draft against its brief and its style.

Every metric is a pure function of the draft, the brief, the style's targets and rules and an explicitly
passed language; the only model involved (the sentence embedder behind ``on_topic``) is handed in by the
caller. :func:`score_drafts` scores a batch and embeds all drafts and briefs in one ``encode`` call.

Readability is computed from textstat's language configuration, but syllables are counted here rather
than by textstat's English path, which looks words up in NLTK's CMU dictionary and tries to *download*
that corpus at first use (impossible offline, and a hidden side effect). See ``docs/scoring.md``.
"""

from __future__ import annotations

import html
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyphen
from textstat.backend.utils import get_lang_cfg
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from worker.intake.briefs import Brief, ContentType
from worker.scoring.memorisation import Closeness, CorpusIndex, GuardLimits
from worker.styles.catalog import GATE_NAMES, StyleRules, Targets

if TYPE_CHECKING:
    from worker.scoring.embeddings import Embedder

logger = logging.getLogger(__name__)

SCORE_NAMES = (
    "readability",
    "grade",
    "gunning_fog",
    "smog",
    "sentiment",
    "formality",
    "structure",
    "length",
    "repetition",
    "keywords",
    "on_topic",
    "style_rules",
    "memorisation",
)
INFORMATIONAL = frozenset(SCORE_NAMES) - frozenset(GATE_NAMES)
REPETITION_N = 4
EMBED_CHUNK_WORDS = 150  # all-MiniLM-L6-v2 reads at most 256 word pieces; ~150 words fit comfortably
ON_TOPIC_TIE_BREAK = 0.05  # weight of on_topic in Scorecard.quality; below one gate's share (>= 0.1)
_DIGITS = 4

# ---------------------------------------------------------------------------------------------------------
# Score and Scorecard


@dataclass(frozen=True)
class Score:
    """One measurement: its value, the metric's own range, and whether it met the style's target."""

    name: str
    value: float
    low: float | None
    high: float | None
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "passed": self.passed,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Scorecard:
    """All scores of one draft, keyed by score name (see ``SCORE_NAMES``)."""

    scores: dict[str, Score] = field(default_factory=dict)

    def failing(self, gates: Iterable[str]) -> list[str]:
        """The gates, in the order given, whose score did not pass; a gate without a score fails."""
        return [gate for gate in gates if gate not in self.scores or not self.scores[gate].passed]

    def passes(self, gates: Iterable[str]) -> bool:
        return not self.failing(gates)

    @property
    def quality(self) -> float:
        """Ranking value in 0..1: the share of gate-able scores that pass, plus a small on_topic tie-break.

        ``quality = (1 - w) * passed_share + w * clamp(on_topic, 0, 1)`` with ``w = ON_TOPIC_TIE_BREAK``.
        One more passing gate always outweighs any on_topic difference.
        """
        gateable = [score for name, score in self.scores.items() if name in GATE_NAMES]
        if not gateable:
            return 0.0
        share = sum(score.passed for score in gateable) / len(gateable)
        on_topic = self.scores.get("on_topic")
        topical = min(max(on_topic.value, 0.0), 1.0) if on_topic is not None else 0.0
        return (1 - ON_TOPIC_TIE_BREAK) * share + ON_TOPIC_TIE_BREAK * topical

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-able ``{name: {value, low, high, passed, detail}}``."""
        return {name: score.to_dict() for name, score in self.scores.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> Scorecard:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed record."""
        scores: dict[str, Score] = {}
        for name, item in data.items():
            try:
                scores[name] = Score(
                    name=str(name),
                    value=float(item["value"]),
                    low=None if item.get("low") is None else float(item["low"]),
                    high=None if item.get("high") is None else float(item["high"]),
                    passed=bool(item["passed"]),
                    detail=str(item.get("detail", "")),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"score {name!r} is malformed: {exc}") from exc
        return cls(scores)


@dataclass(frozen=True)
class DraftToScore:
    """A draft together with what it is measured against."""

    markdown: str
    brief: Brief
    targets: Targets
    rules: StyleRules
    corpus: CorpusIndex | None = None  # what the style's adapter was trained on (the memorisation guard)


# ---------------------------------------------------------------------------------------------------------
# Markdown parsing and stripping

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^\s{0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_ITEM = re.compile(r"^\s*(?:([-*+])|(\d{1,9})[.)])\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_STEP_HEADING = re.compile(r"^step\s+\d+\b", re.IGNORECASE)
_VERDICT_HEADING = re.compile(
    r"\b(verdict|conclusions?|bottom line|final thoughts|summary|should you buy|takeaways?|wrap[- ]up|"
    r"our take|the upshot|recommendation)\b",
    re.IGNORECASE,
)

_INLINE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"<!--.*?-->", re.DOTALL), ""),
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # inline links
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"<https?://[^>]+>"), ""),  # autolinks
    (re.compile(r"https?://\S+"), ""),  # bare URLs
    (re.compile(r"</?[A-Za-z|][^>]*>"), ""),  # HTML tags and chat-template tokens like <|im_end|>
    (re.compile(r"`+([^`]*)`+"), r"\1"),  # code spans keep their text
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(r"\*(?=\S)(.+?)(?<=\S)\*"), r"\1"),  # emphasis with *
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),  # emphasis with _, not snake_case
    (re.compile(r"~~(.+?)~~"), r"\1"),  # strikethrough
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!>|])"), r"\1"),  # backslash escapes
)


BlockKind = Literal["heading", "item", "paragraph", "table", "code"]


@dataclass(frozen=True)
class Block:
    """One Markdown block: ``heading``, ``item`` (list item), ``paragraph``, ``table`` (one row) or ``code``."""

    kind: BlockKind
    text: str
    level: int = 0  # heading level
    ordered: bool = False  # numbered list item


def strip_inline(text: str) -> str:
    """Remove inline Markdown (links, emphasis, code marks, HTML) from one line of text."""
    for pattern, replacement in _INLINE_RULES:
        text = pattern.sub(replacement, text)
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


class _BlockParser:
    """A small line-based Markdown block parser: enough for headings, lists and paragraphs."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.lines: list[str] = []  # the open paragraph or list item
        self.ordered: bool | None = None  # None: the open block is a paragraph, else a (numbered) list item
        self.fence: str | None = None
        self.code: list[str] = []

    def feed(self, line: str) -> None:
        if self.fence is not None:
            self._in_fence(line)
        elif match := _FENCE.match(line):
            self._close()
            self.fence = match.group(1)[0] * 3
        elif not line.strip():
            self._close()
        else:
            self._block_line(line)

    def _in_fence(self, line: str) -> None:
        if line.strip().startswith(self.fence or "```"):
            self.blocks.append(Block("code", "\n".join(self.code)))
            self.fence, self.code = None, []
        else:
            self.code.append(line)

    def _block_line(self, line: str) -> None:
        if (setext := _SETEXT.match(line)) and self.ordered is None and len(self.lines) == 1:
            level = 1 if setext.group(1).startswith("=") else 2
            self.blocks.append(Block("heading", strip_inline(self.lines[0]), level=level))
            self.lines = []
        elif _RULE.match(line):
            self._close()
        elif atx := _ATX.match(line):
            self._close()
            self.blocks.append(Block("heading", strip_inline(atx.group(2) or ""), level=len(atx.group(1))))
        elif item := _ITEM.match(line):
            self._close()
            self.ordered = item.group(2) is not None
            self.lines = [item.group(3)]
        elif _TABLE_SEPARATOR.match(line) and "|" in line:
            return
        elif line.strip().startswith("|"):
            self._close()
            cells = [strip_inline(cell) for cell in line.strip().strip("|").split("|")]
            self.blocks.append(Block("table", ", ".join(cell for cell in cells if cell)))
        else:
            self.lines.append(_QUOTE.sub("", line))

    def _close(self) -> None:
        text = strip_inline(" ".join(self.lines))
        if text and self.ordered is not None:
            self.blocks.append(Block("item", text, ordered=self.ordered))
        elif text:
            self.blocks.append(Block("paragraph", text))
        self.lines, self.ordered = [], None

    def finish(self) -> list[Block]:
        if self.fence is not None:
            self.blocks.append(Block("code", "\n".join(self.code)))
        self._close()
        return self.blocks


def parse_blocks(markdown: str) -> list[Block]:
    """Split Markdown into blocks with their inline syntax already stripped."""
    parser = _BlockParser()
    for line in markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        parser.feed(line)
    return parser.finish()


def strip_markdown(markdown: str) -> str:
    """Plain text of a Markdown document: one block per paragraph, code blocks and syntax removed."""
    return "\n\n".join(block.text for block in parse_blocks(markdown) if block.kind != "code" and block.text)


def _prose(blocks: Sequence[Block]) -> list[str]:
    """Texts of the blocks read as running prose (paragraphs and list items; not headings or code)."""
    return [block.text for block in blocks if block.kind in ("paragraph", "item")]


# ---------------------------------------------------------------------------------------------------------
# Words, sentences, syllables

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
_SILENT_ENDING = re.compile(r"[^aeiouy]e$|[^aeiouysxzcgh]es$|[^aeiouytd]ed$")
_SYLLABIC_LE = re.compile(r"[^aeiouy]les?$")  # "table", "tables"


def words(text: str) -> list[str]:
    """Word tokens: letters and digits, with inner apostrophes and hyphens (``don't``, ``well-known``)."""
    return _WORD.findall(text)


def sentences(blocks_text: Iterable[str]) -> list[str]:
    """Sentences of each block; a block boundary always ends a sentence. Sentences without words are dropped."""
    found: list[str] = []
    for text in blocks_text:
        found.extend(part for part in _SENTENCE_END.split(text) if words(part))
    return found


def language_root(language: str) -> str:
    """``en`` for ``en``, ``en_US``, ``en-GB`` or ``EN``."""
    return language.replace("-", "_").split("_")[0].strip().lower()


@lru_cache(maxsize=16)
def _hyphenator(language: str) -> pyphen.Pyphen | None:
    fallback = pyphen.language_fallback(language.replace("-", "_"))
    return pyphen.Pyphen(lang=fallback) if fallback else None


def _vowel_groups(word: str) -> int:
    """English syllables as vowel groups, less a silent final -e, -es or -ed ("make", "gives", "jumped")."""
    w = word.lower()
    count = len(_VOWEL_GROUPS.findall(w))
    if count > 1 and _SILENT_ENDING.search(w) and not _SYLLABIC_LE.search(w):
        count -= 1
    return max(count, 1)


@lru_cache(maxsize=65536)
def syllables(word: str, language: str) -> int:
    """Syllables of one word: hyphenation points + 1 (textstat's fallback method), with English corrected
    upwards by a vowel-group count because the hyphenation dictionary never splits near word ends."""
    hyphenator = _hyphenator(language)
    by_hyphens = len(hyphenator.positions(word.lower())) + 1 if hyphenator else 0
    if language_root(language) == "en" or hyphenator is None:
        return max(by_hyphens, _vowel_groups(word))
    return by_hyphens


@dataclass(frozen=True)
class TextCounts:
    """Counts behind the readability formulas."""

    words: int
    sentences: int
    syllables: int
    polysyllables: int  # words of three or more syllables

    @property
    def words_per_sentence(self) -> float:
        return self.words / self.sentences if self.sentences else 0.0

    @property
    def syllables_per_word(self) -> float:
        return self.syllables / self.words if self.words else 0.0


def count_text(prose: Sequence[str], language: str) -> TextCounts:
    found = sentences(prose)
    tokens = [token for sentence in found for token in words(sentence)]
    per_word = [syllables(token, language) for token in tokens]
    return TextCounts(len(tokens), len(found), sum(per_word), sum(1 for n in per_word if n >= 3))


# ---------------------------------------------------------------------------------------------------------
# Helpers for Score construction


def _round(value: float) -> float:
    return round(float(value), _DIGITS) if math.isfinite(value) else 0.0


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def _in_range(name: str, value: float, bounds: tuple[float, float], low: float | None, high: float | None) -> Score:
    value = _round(value)
    lo, hi = bounds
    if value < lo:
        where = "below"
    elif value > hi:
        where = "above"
    else:
        where = "within"
    detail = f"{_fmt(value)} {where} target {_fmt(lo)}..{_fmt(hi)}"
    return Score(name, value, low, high, where == "within", detail)


def _informational(name: str, value: float, low: float | None, high: float | None, detail: str) -> Score:
    return Score(name, _round(value), low, high, True, detail)


# ---------------------------------------------------------------------------------------------------------
# Readability


FK_GRADE_MIN = -3.4  # one-syllable words in one-word sentences: 0.39 + 11.8 - 15.59


def _flesch_constants(language: str) -> tuple[float, float, float]:
    """Flesch reading ease base and weights for the language, from textstat's per-language table."""
    root = language_root(language)
    return (
        get_lang_cfg(root, "fre_base"),
        get_lang_cfg(root, "fre_sentence_length"),
        get_lang_cfg(root, "fre_syll_per_word"),
    )


def readability_scores(counts: TextCounts, targets: Targets, language: str) -> list[Score]:
    """Flesch reading ease and Flesch-Kincaid grade (gates) and Gunning fog and SMOG (informational)."""
    base, per_sentence_word, per_syllable = _flesch_constants(language)
    ease_max = base - per_sentence_word - per_syllable  # one-syllable words in one-word sentences
    if counts.words == 0:
        return [
            Score("readability", 0.0, None, _round(ease_max), False, "no prose to measure"),
            Score("grade", 0.0, FK_GRADE_MIN, None, False, "no prose to measure"),
            _informational("gunning_fog", 0.0, 0.0, None, "no prose to measure"),
            _informational("smog", 0.0, 0.0, None, "no prose to measure"),
        ]
    wps, spw = counts.words_per_sentence, counts.syllables_per_word
    ease = base - per_sentence_word * wps - per_syllable * spw
    grade = 0.39 * wps + 11.8 * spw - 15.59
    fog = 0.4 * (wps + 100 * counts.polysyllables / counts.words)
    smog = 1.043 * math.sqrt(30 * counts.polysyllables / counts.sentences) + 3.1291
    return [
        _in_range("readability", ease, targets.reading_ease, None, _round(ease_max)),
        _in_range("grade", grade, targets.grade, FK_GRADE_MIN, None),
        _informational("gunning_fog", fog, 0.0, None, f"Gunning fog index {fog:.1f} (informational)"),
        _informational("smog", smog, 0.0, None, f"SMOG grade {smog:.1f} (informational)"),
    ]


# ---------------------------------------------------------------------------------------------------------
# Sentiment


@lru_cache(maxsize=1)
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def sentiment_value(prose_sentences: Sequence[str]) -> float:
    """Mean VADER compound score over sentences, -1..1 (0.0 without sentences).

    Averaging per sentence keeps long texts from saturating at +-1, which whole-text VADER does."""
    if not prose_sentences:
        return 0.0
    analyzer = _vader()
    return sum(analyzer.polarity_scores(s)["compound"] for s in prose_sentences) / len(prose_sentences)


def sentiment_score(prose_sentences: Sequence[str], targets: Targets, language: str) -> Score:
    value = sentiment_value(prose_sentences)
    if language_root(language) != "en":
        return _informational("sentiment", value, -1.0, 1.0, f"{value:.2f}; VADER is English-only (informational)")
    return _in_range("sentiment", value, targets.sentiment, -1.0, 1.0)


# ---------------------------------------------------------------------------------------------------------
# Formality
#
# An approximation of Heylighen & Dewaele's F-score, F = (noun + adjective + preposition + article - pronoun
# - verb - adverb - interjection + 100) / 2 over word-class percentages, without a part-of-speech tagger:
# closed classes come from small word lists, open classes from suffix and length cues. It is rescaled
# linearly to 0..1 with F = 25 -> 0, F = 50 -> 0.5 and F = 75 -> 1, which simplifies to
# ``formality = clamp(0.5 + formal_share - deictic_share, 0, 1)``. English only.


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


ARTICLES = frozenset({"a", "an", "the"})
PREPOSITIONS = _word_set(
    "about above across after against along amid among around at before behind below beneath beside "
    "besides between beyond by concerning despite during except for from in inside into near of off on "
    "onto outside over past per regarding since through throughout toward towards under underneath "
    "unlike until upon via with within without"
)
FORMAL_CONNECTIVES = _word_set(
    "accordingly consequently furthermore hence however moreover nevertheless nonetheless notwithstanding "
    "therefore thereby thus whereas whereby wherein whereupon"
)
NOUN_ADJECTIVE_SUFFIXES = (
    "tion", "sion", "ment", "ness", "ity", "ance", "ence", "ancy", "ency", "ism", "ist", "ship", "ogy",
    "ure", "al", "ous", "ive", "ic", "able", "ible", "ary",
)  # fmt: skip
SUFFIX_MIN_LENGTH = 7  # shorter words with these endings are too often verbs or function words
LONG_WORD = 10  # long words are overwhelmingly nouns and adjectives
PRONOUNS = _word_set(
    "i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself "
    "she her hers herself it its itself they them their theirs themselves this these those something "
    "anything everything nothing someone anyone everyone nobody somebody everybody"
)
VERBS = _word_set(
    "be am is are was were been being do does did done doing have has had having can could will would "
    "shall should may might must get gets got getting go goes went going make makes made say says said "
    "know think want need let see look come take give feel try"
)
ADVERBS = _word_set(
    "just really very so too now then here there also still even never always again maybe perhaps quite "
    "pretty actually already soon often sometimes usually almost well away back not ever yet"
)
NOT_ADVERBS_IN_LY = _word_set(
    "ally apply assembly belly daily early family fly friendly holly italy jelly july likely lily lovely "
    "only rally reply supply ugly"
)
INTERJECTIONS = _word_set(
    "ah awesome btw cool gonna gotta guys hey hi hooray kinda lol nope oh okay omg ok oops sorta stuff "
    "super totally ugh wanna whoa wow yay yeah yep"
)
_VERB_CONTRACTION = re.compile(r"^\w+(?:n't|'re|'ve|'ll|'d|'m)$")
_PRONOUN_IS = re.compile(r"^(?:it|that|there|here|what|who|he|she|let|where|how|everyone|nobody)'s$")
_EXCLAMATIONS = re.compile(r"!+")
_EMOTICONS = re.compile(r"(?<!\w)[:;]-?[)(DPp](?!\w)")


def _is_emoji(char: str) -> bool:
    return unicodedata.category(char) == "So" and ord(char) >= 0x2600


@dataclass(frozen=True)
class FormalityCounts:
    """Word-class cues behind the formality value."""

    words: int
    formal: int  # articles, prepositions, formal connectives, noun- and adjective-like words
    deictic: int  # pronouns, verbs, adverbs, interjections, exclamations, emoji

    @property
    def f_score(self) -> float:
        """Approximate Heylighen & Dewaele F-score, 0..100 (50 without words)."""
        if not self.words:
            return 50.0
        return 50 + 50 * (self.formal - self.deictic) / self.words

    @property
    def value(self) -> float:
        """Formality 0..1: the F-score rescaled with 25 -> 0 and 75 -> 1."""
        return min(max((self.f_score - 25) / 50, 0.0), 1.0)


def _is_formal(word: str) -> bool:
    if word in ARTICLES or word in PREPOSITIONS or word in FORMAL_CONNECTIVES:
        return True
    if len(word) >= SUFFIX_MIN_LENGTH and word.endswith(NOUN_ADJECTIVE_SUFFIXES):
        return True
    return len(word) >= LONG_WORD and not word.endswith("ly")


def _deictic_cues(word: str) -> int:
    base = word.split("'")[0]
    verb = base in VERBS or bool(_VERB_CONTRACTION.match(word) or _PRONOUN_IS.match(word))
    adverb = word in ADVERBS or (word.endswith("ly") and len(word) >= 5 and word not in NOT_ADVERBS_IN_LY)
    return int(base in PRONOUNS) + int(verb) + int(adverb) + int(word in INTERJECTIONS)


def formality_counts(text: str) -> FormalityCounts:
    """Count formal and deictic (context-dependent, informal) cues in plain English text."""
    tokens = [token.lower().replace("’", "'") for token in words(text)]
    formal = sum(1 for token in tokens if _is_formal(token))
    deictic = sum(_deictic_cues(token) for token in tokens)
    deictic += len(_EXCLAMATIONS.findall(text)) + len(_EMOTICONS.findall(text))
    deictic += sum(1 for char in text if _is_emoji(char))
    return FormalityCounts(len(tokens), formal, deictic)


def formality_value(text: str) -> float:
    """Formality 0 (chatty) .. 1 (formal) of plain English text; 0.5 for text without words."""
    return formality_counts(text).value


def formality_score(prose: Sequence[str], targets: Targets, language: str) -> Score:
    counts = formality_counts("\n".join(prose))
    value = counts.value
    if language_root(language) != "en":
        detail = f"{value:.2f}; word lists are English-only (informational)"
        return _informational("formality", value, 0.0, 1.0, detail)
    score = _in_range("formality", value, targets.formality, 0.0, 1.0)
    detail = f"{score.detail} (F-score ~{counts.f_score:.0f})"
    return Score(score.name, score.value, score.low, score.high, score.passed, detail)


# ---------------------------------------------------------------------------------------------------------
# Structure


@dataclass(frozen=True)
class Shape:
    """What the structure expectations look at."""

    headings: int
    subheadings: int  # level 2 and deeper
    verdict_heading: bool
    numbered_items: int
    step_headings: int  # "Step 1: ..." headings count as numbered steps
    list_items: int
    paragraphs: int

    @property
    def steps(self) -> int:
        return self.numbered_items + self.step_headings


def shape_of(blocks: Sequence[Block]) -> Shape:
    headings = [block for block in blocks if block.kind == "heading" and block.text]
    items = [block for block in blocks if block.kind == "item"]
    return Shape(
        headings=len(headings),
        subheadings=sum(1 for block in headings if block.level >= 2),
        verdict_heading=any(_VERDICT_HEADING.search(block.text) for block in headings),
        numbered_items=sum(1 for block in items if block.ordered),
        step_headings=sum(1 for block in headings if _STEP_HEADING.match(block.text)),
        list_items=len(items),
        paragraphs=sum(1 for block in blocks if block.kind == "paragraph"),
    )


@dataclass(frozen=True)
class Expectation:
    description: str
    check: Callable[[Shape], bool]


STRUCTURE_EXPECTATIONS: dict[ContentType, tuple[Expectation, ...]] = {
    ContentType.HOW_TO: (
        Expectation(">= 2 headings", lambda s: s.headings >= 2),
        Expectation("a numbered list of >= 2 steps", lambda s: s.steps >= 2),
    ),
    ContentType.LISTICLE: (
        Expectation(">= 3 list items or >= 3 subheadings", lambda s: s.list_items >= 3 or s.subheadings >= 3),
    ),
    ContentType.EXPLAINER: (
        Expectation(">= 2 headings", lambda s: s.headings >= 2),
        Expectation(">= 3 paragraphs", lambda s: s.paragraphs >= 3),
    ),
    ContentType.NEWS: (Expectation(">= 3 paragraphs", lambda s: s.paragraphs >= 3),),
    ContentType.REVIEW: (
        Expectation(
            ">= 2 headings incl. a verdict-like heading, or >= 3 paragraphs",
            lambda s: (s.headings >= 2 and s.verdict_heading) or s.paragraphs >= 3,
        ),
    ),
}


def structure_score(blocks: Sequence[Block], content_type: ContentType) -> Score:
    expectations = STRUCTURE_EXPECTATIONS[content_type]
    shape = shape_of(blocks)
    missing = [exp.description for exp in expectations if not exp.check(shape)]
    value = (len(expectations) - len(missing)) / len(expectations)
    met = f"{len(expectations) - len(missing)}/{len(expectations)} {content_type.value} expectations met"
    detail = met if not missing else f"{met}; missing: {'; '.join(missing)}"
    return Score("structure", _round(value), 0.0, 1.0, not missing, detail)


# ---------------------------------------------------------------------------------------------------------
# Length, repetition, keywords


def length_score(word_count: int, target_words: int, tolerance: float) -> Score:
    ratio = _round(word_count / target_words)
    passed = round(abs(ratio - 1), 9) <= tolerance  # float noise: 55/50 - 1 is 0.10000000000000009
    allowed = f"{1 - tolerance:.2f}..{1 + tolerance:.2f}"
    detail = f"{word_count} words, {ratio:.2f}x target {target_words} (allowed {allowed})"
    return Score("length", ratio, 0.0, None, passed, detail)


def repetition_value(tokens: Sequence[str], n: int = REPETITION_N) -> float:
    """Share of word n-grams that repeat an earlier one: ``1 - distinct / total`` (0.0 below n words)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def repetition_score(tokens: Sequence[str], maximum: float) -> Score:
    lowered = [token.lower() for token in tokens]
    value = _round(repetition_value(lowered))
    counts = Counter(tuple(lowered[i : i + REPETITION_N]) for i in range(len(lowered) - REPETITION_N + 1))
    top = counts.most_common(1)
    example = f"; most repeated: {' '.join(top[0][0])!r} x{top[0][1]}" if top and top[0][1] > 1 else ""
    detail = f"{value:.0%} of word {REPETITION_N}-grams repeated (max {maximum:.0%}){example}"
    return Score("repetition", value, 0.0, 1.0, value <= maximum, detail)


def term_pattern(term: str) -> re.Pattern[str]:
    """Case-insensitive, word-boundary-aware pattern for a term; inner whitespace matches any whitespace."""
    body = r"\s+".join(re.escape(part) for part in term.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def keywords_score(text: str, keywords: Sequence[str], minimum: float) -> Score:
    if not keywords:
        return Score("keywords", 1.0, 0.0, 1.0, True, "no keywords in the brief")
    missing = [keyword for keyword in keywords if not term_pattern(keyword).search(text)]
    value = _round((len(keywords) - len(missing)) / len(keywords))
    detail = f"{len(keywords) - len(missing)}/{len(keywords)} keywords found (min {minimum:.0%})"
    if missing:
        detail += f"; missing: {', '.join(missing)}"
    return Score("keywords", value, 0.0, 1.0, value >= minimum, detail)


# ---------------------------------------------------------------------------------------------------------
# Style rules

SMALL_WORDS = _word_set(
    "a an and as at but by en for from if in into nor of off on or per so the to up via vs with yet"
)
_MIN_TITLE_LIKE = 2  # later capitalised words (4+ letters) that make a heading look Title Cased


def _case_words(heading: str) -> list[str]:
    return re.findall(r"[^\W\d_][\w'’-]*", heading)


def _is_plain_word(word: str) -> bool:
    """A word whose case says something: not an acronym (API) nor mixed case (iPhone, JavaScript)."""
    return not (word.isupper() and len(word) > 1) and not any(ch.isupper() for ch in word[1:])


def _sentence_case_problem(tokens: Sequence[str]) -> str | None:
    long_words = [word for word in tokens[1:] if _is_plain_word(word) and len(word) >= 4]
    if len(long_words) >= _MIN_TITLE_LIKE and all(word[0].isupper() for word in long_words):
        return "looks Title Cased"
    return None


def _title_case_problem(tokens: Sequence[str]) -> str | None:
    last = len(tokens) - 1
    lowered = [
        word
        for position, word in enumerate(tokens[1:], start=1)
        if _is_plain_word(word) and word[0].islower() and (position == last or word.lower() not in SMALL_WORDS)
    ]
    return f"lowercase word(s) {', '.join(lowered)}" if lowered else None


def heading_case_problem(heading: str, case: str) -> str | None:
    """Why ``heading`` breaks ``case`` ("sentence" or "title"), or ``None``."""
    tokens = _case_words(heading)
    if not tokens:
        return None
    if tokens[0][0].islower() and _is_plain_word(tokens[0]):
        return "starts with a lowercase letter"
    return _sentence_case_problem(tokens) if case == "sentence" else _title_case_problem(tokens)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("’", "'")).strip().lower()


def style_rule_violations(blocks: Sequence[Block], text: str, rules: StyleRules) -> list[str]:
    """Every violation of the style guide, in a stable order: banned, preferred, disclaimer, headings."""
    found: list[str] = []
    for term in rules.banned_terms:
        if hits := len(term_pattern(term).findall(text)):
            found.append(f"banned term {term!r} used {hits}x")
    for avoid, prefer in rules.preferred_terms.items():
        remaining = term_pattern(prefer).sub(" ", text) if avoid.lower() in prefer.lower() else text
        if hits := len(term_pattern(avoid).findall(remaining)):
            found.append(f"{avoid!r} used {hits}x instead of {prefer!r}")
    disclaimer = rules.required_disclaimer
    if disclaimer and _normalise(strip_inline(disclaimer)) not in _normalise(text):
        found.append("required disclaimer missing")
    if rules.heading_case:
        for block in blocks:
            if block.kind == "heading" and (problem := heading_case_problem(block.text, rules.heading_case)):
                found.append(f"heading {block.text!r} is not {rules.heading_case} case: {problem}")
    return found


def style_rules_score(blocks: Sequence[Block], text: str, rules: StyleRules) -> Score:
    violations = style_rule_violations(blocks, text, rules)
    detail = "no violations" if not violations else "; ".join(violations)
    return Score("style_rules", float(len(violations)), 0.0, None, not violations, detail)


# ---------------------------------------------------------------------------------------------------------
# On topic


def brief_text(brief: Brief) -> str:
    """What the draft is compared with: title, keywords, tags and notes."""
    parts = [brief.title, ", ".join(brief.keywords), ", ".join(brief.tags), brief.notes]
    return "\n".join(part for part in parts if part)


def chunk_words(text: str, size: int = EMBED_CHUNK_WORDS) -> list[str]:
    """Split text into chunks of at most ``size`` whitespace-separated words (none for blank text)."""
    tokens = text.split()
    return [" ".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]


def on_topic_score(similarity: float | None, minimum: float) -> Score:
    if similarity is None:
        return Score("on_topic", 0.0, -1.0, 1.0, True, "not measured (no embedder)")
    value = _round(similarity)
    where = "at or above" if value >= minimum else "below"
    return Score("on_topic", value, -1.0, 1.0, value >= minimum, f"similarity {value:.2f} {where} min {minimum:.2f}")


def on_topic_similarities(
    drafts: Sequence[DraftToScore], embedder: Embedder
) -> tuple[list[float], list[np.ndarray | None]]:
    """Cosine similarity of each draft with its brief, and each draft's normalised embedding (``None`` for an
    empty draft); ONE encode call for all chunks and briefs.

    A draft longer than the model's window is cut into chunks whose normalised vectors are averaged.
    Identical texts (the same brief for several candidates) are encoded once. An empty draft scores 0.0.
    """
    briefs = [brief_text(draft.brief) for draft in drafts]
    chunks = [chunk_words(strip_markdown(draft.markdown)) for draft in drafts]
    unique = list(dict.fromkeys([*briefs, *(chunk for per_draft in chunks for chunk in per_draft)]))
    vectors = embedder.encode(unique)
    index = {text: row for row, text in enumerate(unique)}
    similarities: list[float] = []
    embeddings: list[np.ndarray | None] = []
    for brief, per_draft in zip(briefs, chunks, strict=True):
        mean = np.mean([vectors[index[chunk]] for chunk in per_draft], axis=0) if per_draft else None
        norm = float(np.linalg.norm(mean)) if mean is not None else 0.0
        if mean is None or norm == 0:
            similarities.append(0.0)
            embeddings.append(None)
            continue
        similarities.append(float(np.dot(vectors[index[brief]], mean) / norm))
        embeddings.append(mean / norm)
    return similarities, embeddings


def guard_limits(targets: Targets) -> GuardLimits:
    return GuardLimits(targets.max_copied_words, targets.max_corpus_similarity, targets.max_copied_share)


def memorisation_score(closeness: Closeness | None, limits: GuardLimits) -> Score:
    """The memorisation gate: fails when the draft is too close to its adapter's training corpus."""
    if closeness is None:
        return Score("memorisation", 0.0, 0.0, 1.0, True, "not measured (no corpus index for this adapter version)")
    too_close = closeness.too_close(limits)
    verdict = "too close to the training corpus" if too_close else "not a copy"
    return Score("memorisation", closeness.copied_share, 0.0, 1.0, not too_close, f"{verdict}: {closeness.describe()}")


# ---------------------------------------------------------------------------------------------------------
# Putting it together


def _fail_empty(score: Score) -> Score:
    if score.name in INFORMATIONAL or score.name == "memorisation" or not score.passed:  # nothing to copy
        return score
    return Score(score.name, score.value, score.low, score.high, False, f"empty draft; {score.detail}")


def score_draft(
    draft: DraftToScore,
    *,
    language: str,
    similarity: float | None,
    embedding: np.ndarray | None = None,
) -> Scorecard:
    """Score one draft; ``similarity`` is its on_topic cosine, or ``None`` when not measured; ``embedding`` its
    normalised vector for the memorisation guard (which then uses the 8-gram overlap alone when ``None``)."""
    blocks = parse_blocks(draft.markdown)
    text = strip_markdown(draft.markdown)
    tokens = words(text)
    prose = _prose(blocks)
    targets = draft.targets
    scores = [
        *readability_scores(count_text(prose, language), targets, language),
        sentiment_score(sentences(prose), targets, language),
        formality_score(prose, targets, language),
        structure_score(blocks, draft.brief.content_type),
        length_score(len(tokens), draft.brief.target_words, targets.length_tolerance),
        repetition_score(tokens, targets.max_repetition),
        keywords_score(text, draft.brief.keywords, targets.min_keyword_coverage),
        on_topic_score(similarity, targets.min_on_topic),
        style_rules_score(blocks, text, draft.rules),
        memorisation_score(
            draft.corpus.closeness(draft.markdown, embedding) if draft.corpus is not None else None,
            guard_limits(targets),
        ),
    ]
    if not any(words(part) for part in prose):  # nothing but headings (or nothing at all)
        scores = [_fail_empty(score) for score in scores]
    return Scorecard({score.name: score for score in scores})


def score_drafts(drafts: Sequence[DraftToScore], *, language: str, embedder: Embedder | None) -> list[Scorecard]:
    """Score drafts in order. With an embedder, all drafts and briefs are embedded in one encode call;
    without one, on_topic is informational (passed, "not measured")."""
    if not drafts:
        return []
    similarities: list[float | None] = [None] * len(drafts)
    embeddings: list[np.ndarray | None] = [None] * len(drafts)
    if embedder is not None:
        measured, embeddings = on_topic_similarities(drafts, embedder)
        similarities = list(measured)
    cards = [
        score_draft(draft, language=language, similarity=similarity, embedding=embedding)
        for draft, similarity, embedding in zip(drafts, similarities, embeddings, strict=True)
    ]
    logger.debug("scored %d draft(s) (language %s, on_topic %s)", len(cards), language, embedder is not None)
    return cards
