"""Calibration windows (C4, WikiText-2) and the WikiText-2 test stream, offline or from the Hub.

Offline data lives in a directory laid out like ../shared/data (see its README):
    wikitext-2-raw/wiki.test.raw, wikitext-2-raw/wiki.train.raw (optional)
    c4/en/c4-train.00000-of-01024.first1000.json.gz (or the full shard's name)
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from lib.run.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

C4_SHARD = "en/c4-train.00000-of-01024.json.gz"
C4_OFFLINE_NAMES = ("c4-train.00000-of-01024.json.gz", "c4-train.00000-of-01024.first1000.json.gz")
WIKITEXT_TEST = "wikitext-2-raw/wiki.test.raw"
WIKITEXT_TRAIN = "wikitext-2-raw/wiki.train.raw"
MAX_DRAWS = 200_000
NO_DATA_HINT = "pass --data_dir pointing at a directory laid out like ../shared/data"


def c4_offline_file(data_dir: str | Path) -> Path:
    folder = Path(data_dir) / "c4" / "en"
    for name in C4_OFFLINE_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"no C4 shard in {folder} (looked for {', '.join(C4_OFFLINE_NAMES)}); "
                    f"{NO_DATA_HINT}")


def required_file(data_dir: str | Path, relative: str) -> Path:
    path = Path(data_dir) / relative
    if not path.is_file():
        raise UserError(f"missing data file {path}; {NO_DATA_HINT}")
    return path


def check_data_files(data_dir: str | None, calib_dataset: str | None, evaluate: bool) -> None:
    """Fail before any heavy loading when an offline file we will need is missing."""
    if data_dir is None:
        return
    if not Path(data_dir).is_dir():
        raise UserError(f"--data_dir {data_dir}: no such directory; {NO_DATA_HINT}")
    if calib_dataset == "c4":
        c4_offline_file(data_dir)
    elif calib_dataset == "wikitext2":
        required_file(data_dir, WIKITEXT_TRAIN)
    if evaluate:
        required_file(data_dir, WIKITEXT_TEST)


def data_files(data_dir: str | None, calib_dataset: str | None,
               recovery: bool = False) -> dict | None:
    """Size and SHA-256 of each offline file a run reads (None from the Hub): recorded, and
    compared by --skip_if_done, so a run on a damaged or replaced file is not taken as done."""
    if data_dir is None:
        return None
    paths = {"wikitext_test": required_file(data_dir, WIKITEXT_TEST)}
    if calib_dataset == "c4" or recovery:
        paths["c4"] = c4_offline_file(data_dir)
    if calib_dataset == "wikitext2":
        paths["wikitext_train"] = required_file(data_dir, WIKITEXT_TRAIN)
    from lib.io.writes import hash_file

    found = {}
    for key, path in paths.items():
        digest = hashlib.sha256()
        hash_file(path, digest)
        found[key] = {"file": path.name, "bytes": path.stat().st_size,
                      "sha256": digest.hexdigest()}
    return found


def _hub(what: str, loader):
    try:
        return loader()
    except Exception as exc:  # noqa: BLE001 - offline machines fail in many ways
        raise UserError(f"could not load {what} from the Hugging Face Hub "
                        f"({type(exc).__name__}); {NO_DATA_HINT}") from exc


def _c4_offline(path: Path) -> list[str]:
    """The documents of a C4 JSON-lines gzip; a damaged file ends in one line naming it."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            documents = []
            for number, line in enumerate(f, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                        raise UserError(f"{path}: line {number} has no \"text\" string; "
                                        "restore the file (see ../shared/data's README)")
                    documents.append(row["text"])
    except (EOFError, OSError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        kind = {EOFError: "is truncated", gzip.BadGzipFile: "is not gzip",
                zlib.error: "is damaged",
                UnicodeDecodeError: "is not UTF-8 text",
                json.JSONDecodeError: "has a line that is not JSON"}.get(type(exc), "is unreadable")
        raise UserError(f"{path} {kind} ({type(exc).__name__}); restore the file (see "
                        "../shared/data's README)") from exc
    if not documents:
        raise UserError(f"{path} holds no documents; restore the file (see ../shared/data's "
                        "README)")
    return documents


def c4_documents(data_dir: str | None) -> list[str]:
    if data_dir is not None:
        return _c4_offline(c4_offline_file(data_dir))
    from datasets import load_dataset

    rows = _hub("C4", lambda: load_dataset("allenai/c4", data_files={"train": C4_SHARD},
                                           split="train"))
    return rows["text"]


def wikitext_rows(raw_text: str) -> list[str]:
    """Rows of the Hub's wikitext-2-raw-v1 split from the raw file: one row per line, a
    whitespace-only line becomes "", any other keeps its trailing newline."""
    lines = raw_text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return ["" if not line.strip() else line + "\n" for line in lines]


def wikitext_split(split: str, data_dir: str | None) -> list[str]:
    if data_dir is not None:
        path = required_file(data_dir, WIKITEXT_TEST if split == "test" else WIKITEXT_TRAIN)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 text; restore the file (see ../shared/data's "
                            "README)") from exc
        if not text.strip():
            raise UserError(f"{path} is empty; restore the file (see ../shared/data's README)")
        return wikitext_rows(text)
    from datasets import load_dataset

    rows = _hub(f"WikiText-2 {split}", lambda: load_dataset(
        "Salesforce/wikitext", "wikitext-2-raw-v1", split=split))
    return rows["text"]


def _token_ids(tokenizer, text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt").input_ids[0]


def c4_windows(documents: list[str], tokenizer, nsamples: int, seed: int,
               seqlen: int, used: set[int] | None = None) -> list[torch.Tensor]:
    """Wanda's C4 sampler: draw random documents until one is longer than the window, then a
    random window of it. The draws replay Wanda's (`random` seeded with `seed`). The indices of
    the documents windows came from are added to `used`."""
    rng = random.Random(seed)
    cache: dict[int, torch.Tensor] = {}
    windows = []
    for _ in range(nsamples):
        for _draw in range(MAX_DRAWS):
            i = rng.randint(0, len(documents) - 1)
            if i not in cache:
                cache[i] = _token_ids(tokenizer, documents[i])
            if cache[i].numel() > seqlen:
                break
        else:
            raise UserError(f"no C4 document longer than --seqlen {seqlen} tokens was found in "
                            f"{MAX_DRAWS} draws; lower --seqlen or use a larger C4 sample")
        ids = cache[i]
        if used is not None:
            used.add(i)
        start = rng.randint(0, ids.numel() - seqlen - 1)
        windows.append(ids[start:start + seqlen].unsqueeze(0))
    return windows


def wikitext_windows(rows: list[str], tokenizer, nsamples: int, seed: int,
                     seqlen: int) -> list[torch.Tensor]:
    """Wanda's WikiText-2 sampler: random windows of the space-joined training split."""
    ids = _token_ids(tokenizer, " ".join(rows))
    if ids.numel() <= seqlen + 1:
        raise UserError(f"the WikiText-2 training text is shorter than --seqlen {seqlen}")
    rng = random.Random(seed)
    windows = []
    for _ in range(nsamples):
        start = rng.randint(0, ids.numel() - seqlen - 1)
        windows.append(ids[start:start + seqlen].unsqueeze(0))
    return windows


def calibration_windows(name: str, tokenizer, nsamples: int, seed: int, seqlen: int,
                        data_dir: str | None) -> list[torch.Tensor]:
    """`nsamples` token windows of shape [1, seqlen] for calibration."""
    log.info("calibration: %d windows of %d tokens from %s (seed %d)", nsamples, seqlen, name, seed)
    if name == "c4":
        return c4_windows(c4_documents(data_dir), tokenizer, nsamples, seed, seqlen)
    if name == "wikitext2":
        return wikitext_windows(wikitext_split("train", data_dir), tokenizer, nsamples, seed,
                                seqlen)
    raise UserError(f"unknown --calib_dataset {name}; use c4 or wikitext2")


def _tokenizer_fingerprint(tokenizer) -> bytes | None:
    """Bytes that change whenever the tokenizer could tokenize differently: its full fast
    definition (vocabulary, merges, normalizer, post-processor) and what its Python wrapper adds
    around it, probed on one string. None for tokenizers without a fast backend (not cached)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    probe = tokenizer("Probe: 2 tokens\n\n = x =").input_ids
    return f"{type(tokenizer).__name__}|{probe}|".encode() + backend.to_str().encode()


def cached_token_ids(tokenizer, text: str) -> torch.Tensor:
    """tokenizer(text).input_ids as [1, N] int64, from .cache/tokens when this tokenizer has
    tokenized this text before: the WikiText-2 test stream takes seconds to tokenize (3 s of a
    tiny test run's 3.5 s) and every run of a sweep needs the same one. The key hashes the text
    and the tokenizer's full definition, so a hit is exactly what tokenizing would give."""
    import numpy as np
    import torch

    from lib.io.embedded import CACHE_ROOT

    fingerprint = _tokenizer_fingerprint(tokenizer)
    if fingerprint is None:
        return tokenizer(text, return_tensors="pt").input_ids
    key = hashlib.sha256(fingerprint + b"\0" + text.encode("utf-8")).hexdigest()[:32]
    path = CACHE_ROOT / "tokens" / f"{key}.npy"
    if path.is_file():
        try:
            return torch.from_numpy(np.load(path).astype(np.int64)).unsqueeze(0)
        except (OSError, ValueError, EOFError) as err:  # a damaged entry is made again
            log.warning("token cache entry %s is damaged (%s); tokenizing again", path, err)
            path.unlink(missing_ok=True)
    ids = tokenizer(text, return_tensors="pt").input_ids
    from lib.io.writes import atomic_write_bytes

    try:  # whole or not at all: parallel runs never read half a file
        atomic_write_bytes(path, lambda f: np.save(f, ids[0].numpy().astype(np.int32)))
    except (OSError, UserError) as err:  # a read-only checkout or full disk: only slower
        log.warning("token cache not written (%s)", err)
    return ids


def wikitext_test_ids(tokenizer, data_dir: str | None) -> torch.Tensor:
    """The WikiText-2 test split as one token stream [1, N], joined as Wanda joins it."""
    return cached_token_ids(tokenizer, "\n\n".join(wikitext_split("test", data_dir)))
