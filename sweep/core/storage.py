"""Small files in the sweep storage, local folder or object store alike (through pyarrow's file systems,
the same layer Ray uses for `storage_path`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "hdfs://")


def is_remote(uri: str) -> bool:
    """True for object-store URIs that Ray writes through pyarrow (no local folder to create)."""
    return uri.startswith(REMOTE_SCHEMES)


def _fs(uri: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def join(base: str, *parts: str) -> str:
    """`base/part/...` for a folder or a URI."""
    return "/".join([base.rstrip("/"), *parts])


def exists(path: str) -> bool:
    """Whether a file or folder exists at `path`."""
    if not is_remote(path):
        return Path(path).exists()
    import pyarrow.fs

    fs, inner = _fs(path)
    return fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound


def names(folder: str) -> list[str]:
    """The names directly inside `folder` (empty when it does not exist)."""
    if not is_remote(folder):
        p = Path(folder)
        return sorted(c.name for c in p.iterdir()) if p.is_dir() else []
    import pyarrow.fs

    fs, inner = _fs(folder)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(inner, allow_not_found=True))
    return sorted(i.base_name for i in infos)


def read_bytes(path: str) -> bytes | None:
    """The bytes at `path`, or None when there is no such file."""
    if not is_remote(path):
        p = Path(path)
        return p.read_bytes() if p.is_file() else None
    if not exists(path):
        return None
    fs, inner = _fs(path)
    with fs.open_input_stream(inner) as f:
        return f.read()


def read_text(path: str) -> str | None:
    """The UTF-8 text at `path`, or None when there is no such file."""
    data = read_bytes(path)
    return None if data is None else data.decode()


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` so that a reader never sees half a file (rename on local disks)."""
    if not is_remote(path):
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, p)
        return
    fs, inner = _fs(path)
    with fs.open_output_stream(inner) as f:  # object stores publish an object only once it is complete
        f.write(text.encode())


def remove_tree(path: str) -> None:
    """Delete a folder and everything in it, if it exists."""
    if not exists(path):
        return
    if not is_remote(path):
        import shutil

        shutil.rmtree(path)
        return
    fs, inner = _fs(path)
    fs.delete_dir(inner)


def unwritable(path: str) -> str | None:
    """Why a folder could not be made or written at local `path` (None: it can be, or `path` is remote).

    The nearest folder that exists must be writable and nothing on the way may be a file (`c.yaml/sub`);
    /proc and other pseudo file systems refuse the write itself, so a probe file is made and removed there."""
    if is_remote(path):
        return None
    base = Path(path).absolute()
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        return f"{base} is a file, not a folder"
    if not os.access(base, os.W_OK):
        return f"{base} is not writable"
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".schedsweep-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        return f"cannot write in {base}: {err.strerror or err}"
    return None

