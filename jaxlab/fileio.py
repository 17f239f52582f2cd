"""The one path layer for the files a run reads and writes: local paths and bucket URLs alike.

Every run file (config, metrics, summaries, checkpoints, counts, reports, data) goes through
these functions, which hand `gs://` (and the other schemes etils.epath knows) to epath, the
layer orbax already uses, and keep plain paths on the local file system. Writes are atomic on
both: locally via a temporary file and a rename (with the permissions a plain open() would
give: 0o666 less the umask, so colleagues sharing a cluster can read the results); on an object
store a single upload, which becomes visible only once complete.
"""

from __future__ import annotations

import contextlib
import glob as glob_lib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any, TextIO

from etils import epath

PathLike = str | os.PathLike


def is_remote(path: PathLike) -> bool:
  """Whether `path` is a URL (`gs://bucket/run`) rather than a local path."""
  return "://" in os.fspath(path)


def _epath(path: PathLike) -> epath.Path:
  return epath.Path(os.fspath(path))


def absolute(path: PathLike) -> str:
  """`path` made absolute (URLs are already)."""
  path = os.fspath(path)
  return path if is_remote(path) else os.path.abspath(path)


def parent(path: PathLike) -> str:
  """The directory holding `path`."""
  path = os.fspath(path)
  return str(_epath(path).parent) if is_remote(path) else os.path.dirname(os.path.abspath(path))


def exists(path: PathLike) -> bool:
  return _epath(path).exists() if is_remote(path) else os.path.exists(path)


def isfile(path: PathLike) -> bool:
  return _epath(path).is_file() if is_remote(path) else os.path.isfile(path)


def isdir(path: PathLike) -> bool:
  return _epath(path).is_dir() if is_remote(path) else os.path.isdir(path)


def size(path: PathLike) -> int:
  """The size of file `path` in bytes."""
  return _epath(path).stat().length if is_remote(path) else os.path.getsize(path)


def listdir(path: PathLike) -> list[str]:
  """Names of the entries of directory `path` (not full paths)."""
  if is_remote(path):
    return [child.name for child in _epath(path).iterdir()]
  return os.listdir(path)


def makedirs(path: PathLike) -> None:
  """Creates `path` and its parents; an existing directory is fine. On an object store,
  directories are name prefixes, so there is nothing to create."""
  if not is_remote(path):
    os.makedirs(path, exist_ok=True)


def rmtree(path: PathLike) -> None:
  """Removes `path` and everything under it, if it exists."""
  if is_remote(path):
    if exists(path):
      _epath(path).rmtree()
  else:
    shutil.rmtree(path, ignore_errors=True)


def rename(source: PathLike, target: PathLike) -> None:
  """Renames a file or directory (on an object store: copies each object, then deletes the
  originals; object stores have no rename)."""
  if not is_remote(source):
    os.rename(source, target)
    return
  root = _epath(source)
  if root.is_file():
    copy(source, target)
    root.unlink()
    return
  for child in _files_under(root):
    copy(child, _epath(target) / child.relative_to(root))
  rmtree(source)


def _files_under(directory: epath.Path) -> Iterator[epath.Path]:
  for child in directory.iterdir():
    if child.is_dir():
      yield from _files_under(child)
    else:
      yield child


def copy(source: PathLike, target: PathLike) -> None:
  """Copies one file, between any two places this layer knows (creating `target`'s directory)."""
  makedirs(parent(target))
  if is_remote(source) or is_remote(target):
    _epath(target).write_bytes(_epath(source).read_bytes())
  else:
    shutil.copyfile(source, target)


def glob(pattern: str) -> list[str]:
  """The paths matching `pattern`, sorted (a URL's pattern may use `*` in its last parts)."""
  if not is_remote(pattern):
    return sorted(glob_lib.glob(pattern))
  root, _, rest = pattern.partition("://")
  bucket, _, key = rest.partition("/")
  return sorted(str(p) for p in epath.Path(f"{root}://{bucket}").glob(key))


def open_file(path: PathLike, mode: str = "r") -> IO[Any]:
  """`open(path, mode)` for any path (text modes read and write UTF-8)."""
  if is_remote(path):
    return _epath(path).open(mode)
  encoding = None if "b" in mode else "utf-8"
  return open(path, mode, encoding=encoding)  # noqa: SIM115 (the caller closes it)


def read_text(path: PathLike) -> str:
  with open_file(path) as f:
    return f.read()


def read_bytes(path: PathLike) -> bytes:
  with open_file(path, "rb") as f:
    return f.read()


def read_json(path: PathLike) -> Any:
  with open_file(path) as f:
    return json.load(f)


def read_json_if_exists(path: PathLike) -> Any:
  """The JSON in `path`, or None if there is no such file (a stage not done yet)."""
  return read_json(path) if isfile(path) else None


# A bucket write is buffered in memory up to this size, then in a local temporary file.
_SPOOL_BYTES = 64 << 20

# Flags of the local temporary file: what tempfile.mkstemp uses, minus its fixed 0o600 mode.
_TEMP_FLAGS = (
  os.O_WRONLY
  | os.O_CREAT
  | os.O_EXCL
  | getattr(os, "O_NOFOLLOW", 0)
  | getattr(os, "O_CLOEXEC", 0)
  | getattr(os, "O_BINARY", 0)
)


def _create_temporary(path: str) -> tuple[int, str]:
  """A new, unique file next to `path`, created with mode 0o666 so that the kernel applies the
  umask (and any default ACL of the directory) exactly as for open(path, "w"); no race, unlike
  reading the umask with os.umask."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  prefix = os.path.join(directory, "." + os.path.basename(path) + ".")
  for _ in range(100):
    tmp = prefix + secrets.token_hex(4)
    try:
      return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
    except FileExistsError:
      continue
  raise FileExistsError(f"no free temporary name next to {path}")


@contextlib.contextmanager
def open_atomic(path: PathLike, mode: str = "w") -> Iterator[IO[Any]]:
  """A file whose contents replace `path` only if the block succeeds (`mode` "w" or "wb")."""
  path = os.fspath(path)
  if is_remote(path):
    # Spooled locally and uploaded only if the block succeeds (closing a half-written object
    # would upload it); an upload is atomic: the object appears when it completes.
    spool_mode = "w+b" if "b" in mode else "w+"
    encoding = None if "b" in mode else "utf-8"
    with tempfile.SpooledTemporaryFile(_SPOOL_BYTES, spool_mode, encoding=encoding) as spool:
      yield spool
      spool.seek(0)
      with _epath(path).open(mode) as f:
        shutil.copyfileobj(spool, f)
    return
  fd, tmp = _create_temporary(path)
  try:
    encoding = None if "b" in mode else "utf-8"
    with os.fdopen(fd, mode, encoding=encoding) as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def write_text_atomic(path: PathLike, text: str) -> None:
  """Writes `text` to `path`, atomically: never a partial file."""
  with open_atomic(path) as f:
    f.write(text)


def write_json_atomic(path: PathLike, tree: Any) -> None:
  """Writes `tree` as indented JSON, atomically."""
  write_text_atomic(path, json.dumps(tree, indent=2) + "\n")


def write_jsonl_atomic(path: PathLike, rows: Iterable[dict]) -> None:
  """Writes one JSON object per line (UTF-8, non-ASCII kept as is), atomically.

  Rows are streamed to the temporary file, so a large corpus never sits in memory as one string.
  """
  f: TextIO
  with open_atomic(path) as f:
    f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def save_figure(figure: Any, path: PathLike, **savefig_kwargs: Any) -> None:
  """Saves a matplotlib figure to `path` (format from the extension), atomically."""
  extension = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
  with open_atomic(path, "wb") as f:
    figure.savefig(f, format=extension, **savefig_kwargs)
