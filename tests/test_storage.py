"""What a tenant's storage weighs (appliance/storage.py), for the storage_mb quota."""

from __future__ import annotations

from pathlib import Path

from appliance.storage import MB, quota_bytes, used_bytes


def test_used_bytes_counts_the_tenants_regular_files_only(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    assert used_bytes(root, "acme") == 0  # nothing stored yet
    (root / "acme" / "prompts" / "en-us").mkdir(parents=True)
    (root / "acme" / "prompts" / "en-us" / "welcome.wav").write_bytes(b"x" * 1000)
    (root / "acme" / "voicemail" / "1001").mkdir(parents=True)
    (root / "acme" / "voicemail" / "1001" / "m.wav").write_bytes(b"x" * 234)
    (root / "globex").mkdir()
    (root / "globex" / "big.bin").write_bytes(b"x" * 5000)
    # links are not followed: not to another tenant's file, nor to another's folder
    (root / "acme" / "link.bin").symlink_to(root / "globex" / "big.bin")
    (root / "acme" / "folder").symlink_to(root / "globex", target_is_directory=True)
    assert used_bytes(root, "acme") == 1234
    assert used_bytes(root, "globex") == 5000
    (root / "initech").symlink_to(root / "globex", target_is_directory=True)
    assert used_bytes(root, "initech") == 0
    assert quota_bytes(0) == 0 and quota_bytes(3) == 3 * MB == 3 * 1024 * 1024
