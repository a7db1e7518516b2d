"""Hashing, Ed25519 signing with domain tags, and key files.

Invariants:
- every signature covers ``domain tag || canonical bytes``, so a signature made for one purpose (tx, block,
  commit vote, peer message) never verifies as another;
- key files are written with mode 0600, atomically, never through a symlink; a passphrase, if given, encrypts the seed with Argon2id + XSalsa20-Poly1305.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils
from nacl.bindings import crypto_sign_open

from node.types import Hash32, PublicKey, Signature


def sha256(data: bytes) -> Hash32:
    return Hash32(hashlib.sha256(data).digest())


def verify(pubkey: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature by ``pubkey`` over ``domain || message``."""
    if len(pubkey) != 32 or len(signature) != 64:
        return False
    try:
        crypto_sign_open(signature + domain + message, pubkey)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


@dataclass(frozen=True)
class KeyPair:
    signing: nacl.signing.SigningKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        return cls(nacl.signing.SigningKey(seed))

    @property
    def public(self) -> PublicKey:
        return PublicKey(bytes(self.signing.verify_key))

    @property
    def seed(self) -> bytes:
        return bytes(self.signing)

    def sign(self, domain: bytes, message: bytes) -> Signature:
        return Signature(self.signing.sign(domain + message).signature)


class KeyFileError(Exception):
    pass


KEYFILE_FORMAT = "cemp-ed25519-v1"


def write_key_file(
    path: Path, key: KeyPair, passphrase: bytes | None = None, label: str = "", *, overwrite: bool = True
) -> None:
    """Write ``key`` as JSON, mode 0600 from creation, atomically: a temporary file in the same directory
    (``O_EXCL | O_NOFOLLOW``, fsynced) is renamed onto ``path``, and the directory is fsynced.

    A symlink at ``path`` is replaced, never followed, so its target is untouched. With ``overwrite=False`` an
    existing ``path`` (a dangling symlink too) raises ``KeyFileError`` and nothing is written.
    """
    doc: dict[str, str] = {"format": KEYFILE_FORMAT, "label": label, "public_key": key.public.hex()}
    if passphrase:
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        k = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase,
            salt,
            opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
            memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
        )
        doc["kdf"] = "argon2id-interactive"
        doc["salt"] = salt.hex()
        doc["encrypted_seed"] = bytes(nacl.secret.SecretBox(k).encrypt(key.seed)).hex()
    else:
        doc["seed"] = key.seed.hex()
    data = (json.dumps(doc, indent=2) + "\n").encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, data, overwrite=overwrite)


def write_private_file(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Atomically put ``data`` at ``path`` with mode 0600, never following a symlink (see ``write_key_file``)."""
    if not overwrite and os.path.lexists(path):
        raise KeyFileError(f"{path} exists; refusing to overwrite it")
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as e:
        raise KeyFileError(f"cannot create a key file next to {path}: {e.strerror}") from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)  # replaces a symlink itself, not its target
        else:
            try:
                os.link(tmp, path, follow_symlinks=False)  # fails if anything, even a dangling link, is there
            except FileExistsError:
                raise KeyFileError(f"{path} exists; refusing to overwrite it") from None
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_key_file(path: Path, passphrase: bytes | None = None) -> KeyPair:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise KeyFileError(f"cannot read key file {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != KEYFILE_FORMAT:
        raise KeyFileError(f"{path} is not a CEMP key file (format {KEYFILE_FORMAT!r})")
    try:
        if "encrypted_seed" in doc:
            if not passphrase:
                raise KeyFileError(
                    f"{path} is passphrase-protected; give the passphrase (CEMP_KEY_PASSPHRASE)"
                )
            k = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE,
                passphrase,
                bytes.fromhex(doc["salt"]),
                opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
            )
            seed = nacl.secret.SecretBox(k).decrypt(bytes.fromhex(doc["encrypted_seed"]))
        else:
            seed = bytes.fromhex(doc["seed"])
        key = KeyPair.from_seed(seed)
    except nacl.exceptions.CryptoError:
        raise KeyFileError(f"wrong passphrase for {path}") from None
    except (KeyError, ValueError) as e:
        raise KeyFileError(f"{path} is damaged: {e}") from None
    if key.public.hex() != doc.get("public_key"):
        raise KeyFileError(f"{path}: the seed does not match the recorded public key")
    return key


def public_key_of_file(path: Path) -> PublicKey:
    """The public key recorded in a key file (no passphrase needed)."""
    try:
        doc = json.loads(Path(path).read_text())
        return PublicKey(bytes.fromhex(doc["public_key"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KeyFileError(f"cannot read a public key from {path}: {e}") from None
