"""Builders of small article archives in the layouts of Hugo, Jekyll and Zola, for the corpus and training tests.

``write_archive`` lays out one archive of every kind of file the ingestion must handle; ``write_voice``
writes ``n`` distinct articles of one recognisable voice (plain or formal), enough to train and evaluate.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PLAIN_SENTENCES = [
    "Get a bucket and a soft cloth.",
    "Fill the bucket with warm water.",
    "Add a small squirt of soap.",
    "Wipe the surface from top to bottom.",
    "Rinse the cloth often so the dirt goes away.",
    "Dry the surface with a clean towel.",
    "Check your work in good light.",
    "Put the tools back where they belong.",
    "Open a window to let the air move.",
    "Take a short break if your arms get tired.",
    "Repeat the steps once a week.",
    "It only takes ten minutes.",
    "Start at the top and work down.",
    "Use a dry brush for the dust first.",
    "Keep pets out of the room while it dries.",
    "A little vinegar helps with hard water marks.",
    "Ask a friend to hold the ladder for you.",
    "Wear old clothes because you may get wet.",
    "Throw away the cloth when it gets thin.",
    "Clean a small patch first to test the soap.",
]
FORMAL_SENTENCES = [
    "The implementation relies on a write-ahead log to guarantee durability under concurrent transactions.",
    "Consequently, the storage engine must reconcile in-memory pages with their persistent representation.",
    "Furthermore, the scheduler partitions the workload according to the cardinality of each relation.",
    "This architecture introduces considerable complexity, although the performance characteristics justify it.",
    "The optimisation is applicable whenever the predicate is selective and the index is sufficiently clustered.",
    "Nevertheless, contention on the shared buffer pool remains the principal limitation at high concurrency.",
    "Measurements indicate that the asynchronous commit path reduces latency by approximately forty percent.",
    "The consistency guarantees therefore depend on the isolation level configured for each transaction.",
    "Administrators should evaluate the trade-off between throughput and recoverability before deployment.",
    "In summary, the mechanism is robust, provided that the configuration reflects the expected workload.",
    "The planner estimates selectivity from histograms maintained by the statistics collector.",
    "Replication introduces an additional dimension of complexity regarding the ordering of operations.",
    "Memory allocation follows a slab strategy, which minimises fragmentation under sustained load.",
    "The protocol tolerates the failure of a minority of replicas without compromising availability.",
    "Compaction is scheduled opportunistically, whereas checkpoints occur at deterministic intervals.",
    "The serialisation format is versioned, thereby permitting independent evolution of components.",
    "Observability relies on structured instrumentation exported to the monitoring infrastructure.",
    "Isolation anomalies are detected through predicate locking at the serialisable level.",
]
TOPICS = ["windows", "floors", "tiles", "cupboards", "doors", "shelves", "mirrors", "ovens", "sinks", "stairs"]


def voice_body(kind: str, index: int, sentences: int = 10) -> str:
    """A distinct body of ``sentences`` sentences in the ``plain`` or ``formal`` voice."""
    pool = PLAIN_SENTENCES if kind == "plain" else FORMAL_SENTENCES
    topic = TOPICS[index % len(TOPICS)]
    lines = [f"This note is about {topic}, number {index}."]
    lines += random.Random(f"{kind}-{index}").sample(pool, sentences)
    first, second = " ".join(lines[:5]), " ".join(lines[5:])
    return f"{first}\n\n{second}\n"


def write_voice(root: Path, kind: str, n: int, *, start: int = 0) -> Path:
    """``n`` Hugo page bundles with YAML front matter in one voice; returns ``root``."""
    for i in range(start, start + n):
        folder = root / "content" / "posts" / f"{kind}-post-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        title = f"Cleaning {TOPICS[i % len(TOPICS)]} the easy way {i}" if kind == "plain" else f"Storage internals {i}"
        front = {"title": title, "date": f"2024-01-{i % 28 + 1:02d}", "tags": [kind, "fixture"]}
        (folder / "index.md").write_text(
            "---\n" + json.dumps(front) + "\n---\n" + voice_body(kind, i), encoding="utf-8"
        )  # JSON is valid YAML
    return root


POOL = [
    "Rinse the pan while it is still warm from the stove.",
    "Scrub stuck food away with coarse salt and a soft brush.",
    "Dry everything on low heat until every drop is gone.",
    "Rub a thin coat of oil over the inside before storing it.",
    "Bread changes texture because its starch slowly crystallises again.",
    "A cool pantry keeps flour fresh for many months.",
    "Herbs last longer when their stems stand in a glass of water.",
    "Wrap soft leaves in a damp towel and keep them in the fridge.",
    "A drop of oil on each hinge pin stops most squeaks at once.",
    "Tap the pin upwards with a nail and a small hammer.",
    "Quiet keyboards use dampened switches and a heavier case.",
    "Typing feels softer when the keycaps are made of thick plastic.",
    "The cheapest model was also the loudest one we tried.",
    "Our favourite board costs a little more but lasts for years.",
    "Check the label before you buy any cleaning product.",
    "Open a window while you work so the air stays fresh.",
    "Label every jar with the date you filled it.",
    "Sharp knives are safer than blunt ones because they slip less.",
    "Store the pan with a paper towel inside to soak up moisture.",
    "Keep spare batteries in a drawer away from the stove.",
    "Measure twice before you cut any shelf to size.",
    "A small level helps you hang pictures straight the first time.",
    "Soft cloths leave fewer scratches than paper towels.",
    "Warm water loosens grease much faster than cold water.",
    "Most hinges need fresh oil only once or twice a year.",
    "Frozen bread toasts well straight from the freezer.",
    "Basil hates the cold and turns black in the fridge.",
    "Rosemary and thyme dry beautifully on a sunny windowsill.",
    "We tested each keyboard for a full week of writing.",
    "Battery life ranged from two weeks to two months.",
]


def body(seed: str) -> str:
    """A distinct ~100-word body: eight sentences of the pool, chosen and ordered by ``seed``."""
    rng = random.Random(seed)
    chosen = rng.sample(POOL, 8)
    return (
        f"{seed.capitalize()} matters more than people think. " + " ".join(chosen[:4]) + "\n\n" + " ".join(chosen[4:])
    )


def write_archive(root: Path) -> Path:
    """One archive with every layout, front-matter format and skip reason the ingestion handles."""
    files = {
        # Hugo page bundle, YAML front matter, shortcodes and raw HTML in the body
        "content/posts/cast-iron/index.md": (
            "---\ntitle: How to clean a cast iron pan\ndate: 2024-03-02\ntags: [kitchen, cast iron]\n"
            "categories: [Home, Cooking]\nseries: [Kitchen basics]\ndescription: Keep the seasoning.\n"
            "author: Ana Lima\nkeywords: [cast iron, seasoning]\n---\n"
            f'{{{{< figure src="pan.jpg" >}}}}\n{body("seasoning")}\n\n<div class="tip">Dry it <b>well</b>.</div>\n'
            "<script>alert('x')</script>\n{{% note %}}Inner note text stays.{{% /note %}}\n<!--more-->\n"
        ),
        # Hugo, TOML front matter with a custom taxonomy
        "content/posts/bread.md": (
            '+++\ntitle = "Why bread goes stale"\ndate = 2022-01-01T10:00:00Z\ntags = ["baking"]\n'
            'topics = ["science"]\n[params]\naudience = "Home bakers"\ntone = "curious"\n+++\n' + body("bread")
        ),
        # Hugo, JSON front matter
        "content/posts/json-post.md": (
            '{\n  "title": "Five ways to store herbs",\n  "date": "2023-07-04",\n  "tags": ["herbs"],\n'
            '  "summary": "Keep them green."\n}\n' + body("herbs")
        ),
        # Jekyll post: date and slug from the file name, Liquid tags, space-separated categories
        "_posts/2023-05-06-fix-a-squeaky-door.md": (
            "---\nlayout: post\ncategories: home diy\ntags: doors hinges\n---\n# Fix a squeaky door\n\n"
            "{% include note.html %}\n" + body("hinges") + "\n{% comment %}secret draft note{% endcomment %}\n"
            "{% highlight bash %}\noil --drops 3\n{% endhighlight %}\n{: .notice}\n"
        ),
        # Zola page bundle, TOML with [taxonomies] and [extra]
        "blog/2021-09-10_quiet-keyboards/index.md": (
            '+++\ntitle = "A review of three quiet keyboards"\ndescription = "Typing without the clatter."\n'
            '[taxonomies]\ntags = ["keyboards"]\ncategories = ["Reviews"]\nauthors = ["Sam"]\n'
            '[extra]\ncontent_type = "review"\n+++\n' + body("keyboards")
        ),
        # skipped: drafts, redirects, section pages, near-empty, duplicates, broken front matter
        "content/posts/draft.md": "---\ntitle: Not yet\ndraft: true\n---\n" + body("draft"),
        "_drafts/an-idea.md": "---\ntitle: Idea\n---\n" + body("idea"),
        "_posts/2020-01-01-unpublished.md": "---\ntitle: Hidden\npublished: false\n---\n" + body("hidden"),
        "content/posts/old-url.md": "---\ntitle: Moved\nredirect_to: /new-url/\n---\n",
        "content/posts/alias-stub.md": "---\ntitle: Old\naliases: [/old/]\n---\nSee the new page.\n",
        "content/_index.md": "---\ntitle: Posts\n---\n" + body("section"),
        "content/posts/tiny.md": "---\ntitle: Tiny\n---\nJust a line.\n",
        "content/posts/zz-copy-of-cast-iron.md": "---\ntitle: Copy\n---\n" + body("seasoning") + " Indeed.",
        "content/posts/broken-yaml.md": "---\ntitle: [unclosed\n---\n" + body("broken"),
        "content/posts/never-closed.md": "+++\ntitle = 'x'\n" + body("open"),
        # not Markdown, hidden, or generator output: ignored without a report
        "content/posts/cast-iron/pan.jpg": "not an image",
        ".git/HEAD.md": "ref",
        "public/index.md": body("public"),
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "content/posts/latin1.md").write_bytes("---\ntitle: Café\n---\n".encode("latin-1") + b"caf\xe9 " * 80)
    return root


STYLE_YAML = """\
# A test style. This comment must survive a promote.
name: {name}
description: The {name} test voice.
system_prompt: {prompt}
routing:
  categories: {{{name}-cat: 3}}
gates: [style_rules]  # always passes for non-empty drafts
generation:
  candidates: 1
  max_new_tokens: 48
adapter: null  # served version
"""


def write_style(styles_dir: Path, name: str, prompt: str = "You write short, plain articles.") -> Path:
    """A minimal style folder (with comments in style.yaml); returns the folder."""
    folder = styles_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "style.yaml").write_text(STYLE_YAML.format(name=name, prompt=prompt), encoding="utf-8")
    return folder
