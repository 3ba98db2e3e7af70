"""Tests of :mod:`worker.scoring.markdown`: blocks and plain text of a Markdown document."""

from __future__ import annotations

from worker.scoring.markdown import parse_blocks, prose_texts, strip_inline, strip_markdown

MARKDOWN = """# A *Big* Title #

Intro with **bold**, _emphasis_, `code_span`, a [link](https://example.com) and ![img](x.png).

- first item
* second item
  continued here
1. numbered [ref][1]
2) second numbered

> A quoted line with <b>html</b> and <|im_end|>

```python
def hidden():
    return "never scored"
```

Setext heading
--------------

| col a | col b |
|-------|-------|
| one   | two   |

snake_case_name stays, see https://example.org/path.
"""


def test_strip_markdown_removes_syntax() -> None:
    assert strip_markdown(MARKDOWN).split("\n\n") == [
        "A Big Title",
        "Intro with bold, emphasis, code_span, a link and .",
        "first item",
        "second item continued here",
        "numbered ref",
        "second numbered",
        "A quoted line with html and",
        "Setext heading",
        "col a, col b",
        "one, two",
        "snake_case_name stays, see",
    ]


def test_parse_blocks_kinds() -> None:
    blocks = parse_blocks(MARKDOWN)
    kinds = [(block.kind, block.level, block.ordered) for block in blocks if block.kind != "paragraph"]
    assert kinds == [
        ("heading", 1, False),
        ("item", 0, False),
        ("item", 0, False),
        ("item", 0, True),
        ("item", 0, True),
        ("code", 0, False),
        ("heading", 2, False),
        ("table", 0, False),
        ("table", 0, False),
    ]


def test_prose_is_paragraphs_and_items_only() -> None:
    assert prose_texts(parse_blocks("# H\n\nPara.\n\n- item\n\n```\ncode\n```\n")) == ["Para.", "item"]


def test_strip_inline_unescapes_and_collapses_space() -> None:
    assert strip_inline("A  **b** &amp; [c](d)  `e`") == "A b & c e"
