"""Is the Hugging Face Hub reachable? Asked once, before anything would download.

Without a network the Hub clients retry every request with backoff and print each retry, and a
run would wait for them before failing. One short connection attempt decides instead; when it
fails the Hub libraries are put in offline mode, so what is cached still loads and what is not
fails at once with the library's own error, which the caller turns into one line.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
from urllib.parse import urlparse

log = logging.getLogger(__name__)

PROBE_SECONDS = 3.0
_state: dict[str, bool] = {}


def _endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def reachable() -> bool:
    """Whether a connection to the Hub opens; asked once per process. Offline mode set by the
    user (HF_HUB_OFFLINE=1) counts as unreachable."""
    if "reachable" not in _state:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            _state["reachable"] = False
        else:
            try:
                socket.create_connection(_endpoint(), timeout=PROBE_SECONDS).close()
                _state["reachable"] = True
            except OSError:
                _state["reachable"] = False
                log.info("the Hugging Face Hub is unreachable: working offline (local files and "
                         "the local cache only)")
        if not _state["reachable"]:
            go_offline()
    return _state["reachable"]


def go_offline() -> None:
    """Offline mode for huggingface_hub, transformers and datasets, also when already imported
    (their flags are read at import time)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True
        datasets.config.HF_DATASETS_OFFLINE = True
