"""A tenant's storage on the node and what it weighs (edge module).

Everything a tenant keeps on a node lives under ``storage/<tenant>/``: recorded
prompts, recordings made by its flows, voicemail, files written by flows, plug-ins.
``limits.storage_mb`` in the plan caps that directory; ``used_bytes`` measures it.
A quota of ``n`` MB is ``n * 2**20`` bytes.  Symbolic links are neither followed nor
counted (the stores refuse to follow them out of the tenant's directory anyway).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MB = 1 << 20


def quota_bytes(storage_mb: int) -> int:
    """The ``storage_mb`` limit in bytes (0: no limit)."""
    return storage_mb * MB


def used_bytes(root: Path, tenant_id: str) -> int:
    """Bytes of the regular files under ``root/<tenant_id>`` (0 if there is none)."""
    base = root / tenant_id
    if base.is_symlink() or not base.is_dir():
        return 0
    total = 0
    for folder, _dirs, files in os.walk(base):  # does not descend into linked folders
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:  # removed meanwhile
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total
