"""The --offload reader and writer of safetensors files: every dtype of the table reads back what
safetensors wrote, a dtype outside it is refused in one line, shards come with their index."""
from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from lib.io import safetensors_io
from lib.io.checkpoint import Checkpoint
from lib.io.safetensors_io import DTYPES, SafetensorsFile, ShardWriter
from lib.run.errors import UserError


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], gen: torch.Generator):
    """Arbitrary bytes viewed as `dtype` (0 or 1 for bool: other bytes are not booleans)."""
    size = torch.empty(0, dtype=dtype).element_size()
    count = size * torch.Size(shape).numel()
    high = 2 if dtype == torch.bool else 256
    raw = torch.randint(0, high, (count,), dtype=torch.uint8, generator=gen)
    return raw.view(dtype).reshape(shape)


def test_every_table_dtype_reads_back_what_safetensors_wrote(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for name, dtype in DTYPES.items():
        tensors[name] = random_tensor(dtype, (3, 5), gen)
        tensors[name + ".empty"] = torch.empty(0, 4, dtype=dtype)
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path))
    reader = SafetensorsFile(path)
    for key, written in tensors.items():
        # the table's name for the dtype is the one safetensors itself writes
        assert reader.header[key]["dtype"] == key.removesuffix(".empty")
        read = reader.tensor(key)
        assert read.dtype == written.dtype and read.shape == written.shape, key
        assert torch.equal(read.view(torch.uint8), written.view(torch.uint8)), key


def write_raw(path, dtype: str, nbytes: int) -> None:
    """A safetensors file by hand: one tensor `w` of `dtype`, whatever torch knows of it."""
    header = json.dumps({"w": {"dtype": dtype, "shape": [nbytes],
                               "data_offsets": [0, nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(nbytes))


@pytest.mark.parametrize("dtype", ["F6_E2M3", "F4", "Q9"])
def test_a_dtype_outside_the_table_is_refused_in_one_line(tmp_path, dtype):
    path = tmp_path / "model.safetensors"
    write_raw(path, dtype, 6)
    with pytest.raises(UserError) as err:
        Checkpoint(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and "tensor w " in message and dtype in message
    assert "save_pretrained" in message  # the fix


def test_shards_split_at_the_limit_and_read_back_through_their_index(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors_io, "SHARD_BYTES", 100)
    gen = torch.Generator().manual_seed(1)
    tensors = {f"layer.{i}.weight": torch.randn(4, 4, generator=gen) for i in range(3)}
    writer = ShardWriter(tmp_path / "out")
    for name, tensor in tensors.items():
        writer.add(name, tensor)  # 64 bytes each: a shard every second tensor
    writer.finish()
    files = sorted(p.name for p in writer.folder.glob("*.safetensors"))
    assert files == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = json.loads((writer.folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors)
    checkpoint = Checkpoint(writer.folder)
    for name, tensor in tensors.items():
        assert torch.equal(checkpoint.tensor(name), tensor)
