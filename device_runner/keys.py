"""The adb RSA key: the same ``~/.android/adbkey`` (+ ``.pub``) that Google's adb uses.

Using the same key means a phone that already trusts the user's adb ("Always allow from this
computer") trusts this tool too, and the user answers the USB debugging prompt once for both.
The folder follows adb's rules: ``$ANDROID_USER_HOME`` if set, else ``$ANDROID_SDK_HOME/.android``,
else ``$HOME/.android``. A missing key is created with adb-shell's keygen (RSA 2048, PKCS#8 PEM),
written under temporary names and moved into place so that a half-written key never exists.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from device_runner.errors import AdbKeyError


def android_user_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("ANDROID_USER_HOME"):
        return Path(env["ANDROID_USER_HOME"])
    if env.get("ANDROID_SDK_HOME"):
        return Path(env["ANDROID_SDK_HOME"]) / ".android"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".android"


def default_key_path(env: dict[str, str] | None = None) -> Path:
    return android_user_dir(env) / "adbkey"


def ensure_key(path: Path | None = None) -> Path:
    """Return the private key path, creating the pair if the private key is missing."""
    path = Path(path) if path is not None else default_key_path()
    pub = path.with_name(path.name + ".pub")
    if path.is_file() and pub.is_file():
        return path
    if path.is_file() and not pub.is_file():
        _write_public_key(path, pub)
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from adb_shell.auth.keygen import keygen

        tmpdir = Path(tempfile.mkdtemp(prefix=".adbkey-", dir=path.parent))
        try:
            tmp_key = tmpdir / "adbkey"
            keygen(str(tmp_key))
            os.chmod(tmp_key, 0o600)
            # public first: a private key without its .pub is repaired above, the reverse is not usable
            os.replace(tmpdir / "adbkey.pub", pub)
            os.replace(tmp_key, path)
        finally:
            for leftover in tmpdir.iterdir():
                leftover.unlink()
            tmpdir.rmdir()
    except OSError as err:
        raise AdbKeyError(
            f"cannot create the adb key {path}: {err.strerror or err}",
            next_step="Make the folder writable, or set ANDROID_USER_HOME to a writable folder.",
            path=str(path),
        ) from None
    return path


def _write_public_key(private: Path, pub: Path) -> None:
    from adb_shell.auth.keygen import write_public_keyfile

    try:
        tmp = pub.with_name(pub.name + ".tmp")
        write_public_keyfile(str(private), str(tmp))
        os.replace(tmp, pub)
    except (OSError, ValueError) as err:
        raise AdbKeyError(
            f"cannot derive the public key {pub} from {private}: {err}",
            next_step="Delete both files to have a new key made (the phone will ask to allow it again).",
            path=str(private),
        ) from None


def load_signer(path: Path | None = None, *, create: bool = True):
    """A ``PythonRSASigner`` for ``path`` (default ``~/.android/adbkey``), creating the key if allowed."""
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    path = Path(path) if path is not None else default_key_path()
    if create:
        ensure_key(path)
    elif not path.is_file():
        raise AdbKeyError(f"adb key {path} does not exist",
                          next_step="Run once without --no-create-key, or run `adb devices` to make one.",
                          path=str(path))
    try:
        return PythonRSASigner.FromRSAKeyPath(str(path))
    except (OSError, ValueError, IndexError, TypeError) as err:
        raise AdbKeyError(
            f"cannot read the adb key {path}: {err}",
            next_step="Move the broken key away to have a new one made (the phone will ask to allow it again).",
            path=str(path),
        ) from None
    except Exception as err:  # noqa: BLE001 - pyasn1/rsa raise their own types for a corrupt PEM
        raise AdbKeyError(
            f"cannot read the adb key {path}: {type(err).__name__}: {err}",
            next_step="Move the broken key away to have a new one made (the phone will ask to allow it again).",
            path=str(path),
        ) from None
