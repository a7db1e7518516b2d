"""Key files: created 0600, atomically (temp file in the same directory, fsync, rename), never through a symlink:
``cemp keys new --force`` on a symlink replaces the link and leaves its target alone; without ``--force`` an
existing path, a dangling symlink included, is refused and nothing is created."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.crypto import KeyFileError, KeyPair, read_key_file, write_key_file

CEMP = Path(sys.executable).parent / "cemp"


def _cemp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CEMP), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not CEMP.exists(), reason="the cemp console script is not installed next to python")
def test_keys_new_force_does_not_follow_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "owner.admin.key"
    link.symlink_to(victim)
    out = _cemp("keys", "new", "--out", str(link), "--force")
    assert out.returncode == 0, out.stderr
    assert victim.read_text() == "precious\n"
    assert not link.is_symlink() and link.stat().st_mode & 0o777 == 0o600
    assert read_key_file(link).public.hex() == json.loads(out.stdout)["public_key"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "owner.admin.key",
        "victim.txt",
    ]  # no temp file left


@pytest.mark.skipif(not CEMP.exists(), reason="the cemp console script is not installed next to python")
def test_keys_new_without_force_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "created-by-attacker"
    target.parent.mkdir()
    link = tmp_path / "k.key"
    link.symlink_to(target)
    out = _cemp("keys", "new", "--out", str(link))
    assert out.returncode == 2 and "exists" in out.stderr
    assert not target.exists() and link.is_symlink()


def test_write_key_file_modes_and_exclusive_create(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        p = tmp_path / "sub" / "a.key"
        k = KeyPair.generate()
        write_key_file(p, k, overwrite=False)
        assert p.stat().st_mode & 0o777 == 0o600 and read_key_file(p).public == k.public
        with pytest.raises(KeyFileError, match="exists"):
            write_key_file(p, KeyPair.generate(), overwrite=False)
        assert read_key_file(p).public == k.public
        k2 = KeyPair.generate()
        write_key_file(p, k2)  # overwrite (the default) replaces atomically
        assert read_key_file(p).public == k2.public and p.stat().st_mode & 0o777 == 0o600
        assert [x.name for x in p.parent.iterdir()] == ["a.key"]
    finally:
        os.umask(old)
