"""A session-wide trained world for the style CLI and evaluation tests: the tiny model, a style ``calm`` with an
adapter v1 trained on a plain corpus, and a style ``stiff`` that has only a formal ``corpus/`` folder.

Import the fixture into a test module (``from training_fixtures import trained_world``); copy the world
(``copy_world``) before changing it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from corpus_fixtures import write_style, write_voice
from model_fixtures import one_torch_thread, tiny_model_dir

from worker.config import Settings
from worker.lab.options import TrainingOptions
from worker.lab.training import train_style
from worker.scoring.embeddings import default_embedder

FAST = {"max_length": 160, "batch_size": 4, "lora_r": 4, "lora_alpha": 8, "min_words": 30, "eval_fraction": 0.25}


@dataclass(frozen=True)
class World:
    root: Path
    model_dir: Path

    @property
    def styles_dir(self) -> Path:
        return self.root / "styles"

    def settings(self) -> Settings:
        home, model = self.root / "home", str(self.model_dir)
        return Settings(home=home, styles_dir=self.styles_dir, model=model, device="cpu", dtype="float32")

    def env(self) -> dict[str, str]:
        return {
            "COPYDESK_HOME": str(self.root / "home"),
            "COPYDESK_STYLES_DIR": str(self.styles_dir),
            "COPYDESK_MODEL": str(self.model_dir),
            "COPYDESK_DEVICE": "cpu",
            "COPYDESK_DTYPE": "float32",
            "COPYDESK_THREADS": "1",
            "COLUMNS": "200",
        }


_WORLD: dict[str, World] = {}


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> World:
    """Built once per session. Read-only: use :func:`copy_world` to change it."""
    if "world" not in _WORLD:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        root = tmp_path_factory.mktemp("trained-world")
        world = World(root, tiny_model_dir)
        write_style(world.styles_dir, "calm", "You write short, plain articles.")
        stiff = write_style(world.styles_dir, "stiff", "You write formal technical articles.")
        write_voice(stiff / "corpus", "formal", 8)
        corpus = write_voice(root / "calm-corpus", "plain", 8)
        options = TrainingOptions(epochs=2, learning_rate=5e-3, **FAST)
        train_style(world.settings(), "calm", corpus_dir=corpus, options=options, embedder=default_embedder())
        torch.set_num_threads(before)
        _WORLD["world"] = world
    return _WORLD["world"]


def copy_world(world: World, destination: Path) -> World:
    shutil.copytree(world.styles_dir, destination / "styles")
    return World(destination, world.model_dir)


__all__ = ["FAST", "World", "copy_world", "one_torch_thread", "tiny_model_dir", "trained_world"]
