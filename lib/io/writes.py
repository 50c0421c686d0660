"""Where a run writes, and the rules that keep one run from destroying another's work or the
user's files: a lock per output folder for the run's whole life, files and folders that appear
whole or not at all, and model folders that are replaced only when this tool wrote them.

* Lock: an OS lock (flock) on `<folder>/.lock` (a results folder) or `<parent>/.<name>.lock` (a
  model folder), taken at planning and released by the kernel when the process ends, however it
  ends; a second run into a locked folder is refused with the holder's PID.
* Files: written to a uniquely named temporary beside the target, then renamed over it.
* Folders (a saved model, a converted copy): written into `<parent>/.<name>.tmp-<pid>-<random>`,
  stamped with a marker file listing what was written, then renamed into place (a previous
  version of ours is moved aside first and removed after). A temporary left by a killed run
  (its PID no longer alive) is removed by the next publish into the same parent.
* A model folder that exists, is not empty and holds no marker is not ours: refused (or
  `--overwrite`), as is a model folder at or inside the input model's folder.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from lib.run.errors import UserError

MARKER = "wanda_selectivity_save.json"
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-\w+$")
_held: dict[str, int] = {}  # lock path -> open descriptor, kept for the process's life


def kill_point(name: str) -> None:
    """A test hook: with WANDA_KILL_AT=<name> in the environment, the process kills itself
    (SIGKILL, no cleanup) here, as a power cut or the OOM killer would."""
    if os.environ.get("WANDA_KILL_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def lock(path: Path, what: str) -> None:
    """Hold an exclusive lock on `path` until the process ends; refuse if another run holds
    it. Re-locking a path this process holds is a no-op."""
    key = str(path.resolve())
    if key in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise UserError(f"{what} is in use by another run (PID {holder}); wait for it to "
                            "finish or choose another folder") from exc
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[key] = fd


def release_locks() -> None:
    """Release every lock this process holds (closing the descriptor drops the flock)."""
    while _held:
        os.close(_held.popitem()[1])


def lock_results_dir(save: str) -> None:
    lock(Path(save) / ".lock", f"--save {save}")


def lock_model_dir(folder: str | Path) -> None:
    folder = Path(folder)
    lock(folder.parent / f".{folder.name}.lock", f"--save_model {folder}")


def check_writable(folder: str | Path, flag: str) -> None:
    """Refuse at planning a folder that cannot be created or written."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {folder}: {probe} is not a writable folder; choose another")


def atomic_write_text(path: Path, text: str) -> None:
    """`path` holds `text` whole, or is left as it was (a full disk says so in one line)."""
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(path: Path, write) -> None:
    """`write(file)` fills a uniquely named temporary beside `path`, which then replaces it;
    on any failure the temporary is removed and `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise UserError(f"the disk is full: could not write {path}; what it held before "
                            "is kept") from exc
        raise


def hash_file(path: Path, digest) -> None:
    """Feed a file's bytes to a hashlib digest, a few MB at a time."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)


def is_ours(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def check_model_target(folder: str | Path, input_folders: list[str], overwrite: bool) -> None:
    """Planning: --save_model may replace a previous save of this tool, nothing else (never
    one of the input model's folders, nor a folder inside one)."""
    target = Path(folder).resolve()
    for input_folder in input_folders:
        source = Path(input_folder).resolve()
        if target == source or source in target.parents:
            raise UserError(f"--save_model {folder} is the input model's folder (or inside it); "
                            "choose another folder")
    if target.exists() and not target.is_dir():
        raise UserError(f"--save_model {folder} is a file; choose a folder")
    if target.is_dir() and any(target.iterdir()) and not is_ours(target) and not overwrite:
        raise UserError(f"--save_model {folder} holds files this tool did not write; choose an "
                        "empty or new folder, or pass --overwrite to replace them")
    check_writable(target, "--save_model")


def remove_stale_temporaries(parent: Path) -> list[Path]:
    """Remove temporary folders of killed runs (their PID gone) in `parent`."""
    removed = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        match = _TEMP.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_folder(target: str | Path) -> Path:
    """A fresh folder beside `target` to write into, for `publish` to rename into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-{os.getpid()}-"))


def folder_manifest(folder: Path) -> dict:
    """Every file's size and the SHA-256 over the weights files (name order), so a results file
    can say which saved model it describes."""
    files = {p.relative_to(folder).as_posix(): p.stat().st_size
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}
    digest = hashlib.sha256()
    for name in files:
        if name.endswith(".safetensors"):
            hash_file(folder / name, digest)
    return {"files": files, "weights_sha256": digest.hexdigest()}


def publish(tmp: Path, target: str | Path, record: dict | None = None) -> dict:
    """Stamp `tmp` with the marker (the manifest and `record`) and rename it to `target`,
    replacing a previous folder there (checked at planning to be ours, or --overwrite).
    Returns the manifest."""
    target = Path(target)
    kill_point("before_publish")
    manifest = folder_manifest(tmp)
    (tmp / MARKER).write_text(json.dumps({**(record or {}), **manifest}, indent=2) + "\n")
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent,
                                    prefix=f".{target.name}.tmp-{os.getpid()}-old"))
        os.replace(target, old / "previous")
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return manifest
