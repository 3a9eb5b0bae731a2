"""The content digest of a kerasflow SavedModel export: what ``serve`` checks before loading.

A SavedModel graph is code, so kerasflow serves one only when it knows the
exact bytes: :func:`content_digest` hashes every file of the export folder
(``saved_model.pb``, ``fingerprint.pb``, ``variables/*``, ``assets/*``) in a
fixed order with SHA-256. The contract (``assets/kerasflow.json``) is hashed
as canonical JSON without its own ``content_digest`` field, so the digest can
be written into it and still covers the task, class names and thresholds.

Where a digest is recorded (written by :func:`kerasflow.serving.export.export_after_training`):

* the contract's ``content_digest`` field: a claim only (whoever edits the
  files can edit it too), used to say *altered* rather than *unknown*;
* the run's tag and the registered model version's tag :data:`DIGEST_TAG`:
  the trusted record for ``runs:/`` and ``models:/`` (and for a local folder
  whose digest the tracking store holds).

Example:
    >>> content_digest("export/digits/1")
    'sha256:3f1c...'
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from kerasflow.errors import ServingError

DIGEST_TAG = "kerasflow.export_digest"
DIGEST_FIELD = "content_digest"
CONTRACT_PATH = "assets/kerasflow.json"
PREFIX = "sha256:"
_CHUNK = 1 << 20


def _file_hash(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def _contract_hash(path: Path) -> bytes:
    """The contract without its ``content_digest`` field, as canonical JSON (key order fixed)."""
    try:
        contract = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _file_hash(path)  # not ours; hashed as bytes (and refused when read later)
    if isinstance(contract, dict):
        contract.pop(DIGEST_FIELD, None)
    canonical = json.dumps(contract, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).digest()


def content_digest(saved_model_dir: str | os.PathLike) -> str:
    """``sha256:<hex>`` over every file of an export folder, in sorted path order.

    Each file contributes its relative POSIX path and the SHA-256 of its bytes,
    so a renamed, added, removed or edited file changes the digest.

    Raises:
        ServingError: the folder holds a symbolic link or something that is not a file.
    """
    root = Path(saved_model_dir)
    total = hashlib.sha256(b"kerasflow-export-digest-v1\0")
    for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise ServingError(f"{path} is a symbolic link; a kerasflow export holds none.")
        if path.is_dir():
            continue
        if not path.is_file():
            raise ServingError(f"{path} is not a regular file; a kerasflow export holds none.")
        content = _contract_hash(path) if rel == CONTRACT_PATH else _file_hash(path)
        total.update(rel.encode() + b"\0" + content)
    return PREFIX + total.hexdigest()


def claimed_digest(saved_model_dir: str | os.PathLike) -> str | None:
    """The digest the export's own contract claims (None when it has none or is unreadable)."""
    path = Path(saved_model_dir) / CONTRACT_PATH
    try:
        value = json.loads(path.read_bytes()).get(DIGEST_FIELD)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def write_digest(saved_model_dir: str | os.PathLike) -> str:
    """Compute the export's digest and record it in its contract; returns the digest."""
    digest = content_digest(saved_model_dir)
    path = Path(saved_model_dir) / CONTRACT_PATH
    contract = json.loads(path.read_text())
    contract[DIGEST_FIELD] = digest
    path.write_text(json.dumps(contract, indent=2))
    return digest


def normalise(digest: str) -> str:
    """``sha256:<64 hex>`` from a digest given with or without its prefix, in any case.

    Raises:
        ServingError: not a SHA-256 hex digest.
    """
    text = str(digest).strip().lower().removeprefix(PREFIX)
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ServingError(
            f"A SavedModel digest is 'sha256:' and 64 hex digits, as `kerasflow export` "
            f"prints it. Received: {str(digest)[:80]!r}"
        )
    return PREFIX + text
