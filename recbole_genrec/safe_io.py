"""Files that several runs can share: atomic writes, unique run names, content fingerprints.

* :func:`atomic_write` / :func:`atomic_torch_save` write to a temporary file in the target's
  folder and move it into place with ``os.replace``: a reader (or a second run) sees the old
  file or the new one, never a half-written one, and a crash mid-write leaves no truncated file.
* :func:`file_lock` holds an exclusive lock on a file for a ``with`` block (POSIX ``flock``): runs
  that read, update and rewrite one shared file (parallel comparisons into one folder) take turns.
* :func:`unique_run_name` is ``<model>-<local time>-<pid>-<random>``: two runs of one model
  started in the same second in one folder (parallel comparisons, job arrays) never share a
  checkpoint name. RecBole's own name is ``<model>-<local time to the second>``.
* :func:`folder_digest` fingerprints a folder by the size and sha256 of every file in it
  (streamed, so model weights are hashed without loading them into memory).
"""

import contextlib
import hashlib
import os
import secrets
import tempfile
import time

_CHUNK = 1 << 20


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary binary file next to ``path``, then move it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private; a plain open() would honour the umask
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def atomic_write_text(path, text, encoding="utf-8"):
    atomic_write(path, lambda f: f.write(text.encode(encoding)))


def atomic_torch_save(obj, path):
    """``torch.save(obj, path)`` (torch's default pickle protocol), atomically."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


@contextlib.contextmanager
def file_lock(path):
    """An exclusive lock on ``path`` (created if missing) for the ``with`` block; where ``fcntl`` does not
    exist (Windows) the block runs unlocked. Not re-entrant: a process must not take it twice at once."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def unique_run_name(model):
    """``<model>-<Mon-DD-YYYY_HH-MM-SS>-<pid>-<6 hex>``: unique per run even within one second."""
    stamp = time.strftime("%b-%d-%Y_%H-%M-%S", time.localtime())
    return f"{model}-{stamp}-{os.getpid()}-{secrets.token_hex(3)}"


def file_digest(path):
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_digest(folder):
    """sha256 over (relative path, size, sha256) of every file under ``folder``, sorted by path.

    Hidden entries (``.git``, ``.cache``, editor swap files) are skipped. Every file is read
    (no mtime shortcut: a rewrite within the file system's time resolution must still count).
    """
    entries = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            full = os.path.join(root, name)
            if name.startswith(".") or not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            entries.append(f"{rel}\t{os.path.getsize(full)}\t{file_digest(full)}")
    return hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()


def unique_checkpoint_path(config):
    """``<checkpoint_dir>/<unique_run_name(model)>.pth``, the best-model file of one run."""
    return os.path.join(config["checkpoint_dir"], unique_run_name(config["model"]) + ".pth")
