from __future__ import annotations

import hashlib

import pytest
import torch

from lib.io import data
from lib.run.errors import UserError

WIKITEXT_TEST_JOINED_SHA256 = "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83"


def test_wikitext_rows_reproduce_hub_join(data_dir):
    rows = data.wikitext_split("test", str(data_dir))
    assert len(rows) == 4358 and sum(1 for r in rows if r) == 2891
    joined = "\n\n".join(rows).encode("utf-8")
    assert hashlib.sha256(joined).hexdigest() == WIKITEXT_TEST_JOINED_SHA256


@pytest.mark.slow
def test_c4_windows_follow_wanda_sampling(data_dir, tokenizer):
    docs = data.c4_documents(str(data_dir))
    assert len(docs) == 1000
    a = data.c4_windows(docs, tokenizer, 6, seed=3, seqlen=64)
    b = data.c4_windows(docs, tokenizer, 6, seed=3, seqlen=64)
    c = data.c4_windows(docs, tokenizer, 6, seed=4, seqlen=64)
    assert all(w.shape == (1, 64) for w in a)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert any((x != y).any() for x, y in zip(a, c, strict=True))
    # every window is a contiguous slice of a document longer than the window
    tokenized = [torch.tensor(ids) for ids in tokenizer(docs).input_ids]
    for w in a[:2]:  # every start of every long document, compared at once
        hits = [ids for ids in tokenized if ids.numel() > 64 and bool(
            (ids[:-1].unfold(0, 64, 1) == w[0]).all(dim=1).any())]
        assert hits


def test_c4_without_long_documents_is_a_user_error(tokenizer):
    with pytest.raises(UserError, match="seqlen"):
        data.c4_windows(["short text"] * 3, tokenizer, 1, seed=0, seqlen=64)


def test_hub_failure_says_pass_data_dir(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="--data_dir"):
        data.wikitext_split("test", None)
    with pytest.raises(UserError, match="--data_dir"):
        data.c4_documents(None)


def test_missing_offline_files_named(tmp_path):
    with pytest.raises(UserError, match="wiki.test.raw"):
        data.check_data_files(str(tmp_path), None, evaluate=True)
    with pytest.raises(UserError, match="c4"):
        data.check_data_files(str(tmp_path), "c4", evaluate=False)


def test_token_cache_gives_what_tokenizing_gives_and_tells_tokenizers_apart(
        tmp_path, monkeypatch, tokenizer):
    import tiny_models

    from lib.io import embedded

    monkeypatch.setattr(embedded, "CACHE_ROOT", tmp_path)
    text = "\n\n".join(["= Title =", " A line of text , with 12 numbers .", "", "Ünïcode ok"]) * 50
    direct = tokenizer(text, return_tensors="pt").input_ids
    first = data.cached_token_ids(tokenizer, text)  # tokenizes and writes
    assert len(list((tmp_path / "tokens").glob("*.npy"))) == 1
    second = data.cached_token_ids(tokenizer, text)  # reads
    assert first.dtype == second.dtype == direct.dtype
    assert first.tolist() == second.tolist() == direct.tolist()
    other = tiny_models.train_tokenizer(text, vocab_size=290)  # another vocabulary: another key
    assert data.cached_token_ids(other, text).tolist() == [other(text).input_ids] and \
        len(list((tmp_path / "tokens").glob("*.npy"))) == 2
    data.cached_token_ids(tokenizer, text + ".")  # another text: another key
    assert len(list((tmp_path / "tokens").glob("*.npy"))) == 3
