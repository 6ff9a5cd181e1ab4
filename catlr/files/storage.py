"""Where a container lives: a local path, or a Zarr store at an fsspec URL (s3://, gs://,
memory://, file://, ...). The one place a URL is recognised, turned into a filesystem and
its failures into one line; fsspec is imported only when a URL is given.

A path typer made of a URL has lost a slash (s3://b/x.zarr -> s3:/b/x.zarr): `url()`
restores it. file:// is a local path (`local()`), with every check of one. A real folder
named like a scheme ('memory:') is still a path.
"""

from __future__ import annotations

import contextlib
import os
import re

from ..errors import CatlrError, UsageError, describe

# a scheme of two letters or more (not a drive letter), as given or as a path makes it
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):/")
# option values shown in messages; every other one is written *** (keys, secrets, tokens)
PUBLIC = frozenset({"endpoint_url", "region_name", "anon", "use_ssl", "default_block_size"})
MEMORY = "memory"


PARTIAL = ".catlr-partial"  # in a store at a URL while remote.remote_folder copies it in


def url(path) -> str | None:
    """The URL `path` is (s3://bucket/x.zarr, its slashes restored), or None for a path."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else ""
    found = _URL.match(text)
    if not found or os.path.lexists(f"{found[1]}:"):
        return None
    scheme, rest = found[1].lower(), text[len(found[1]) + 1:]
    if scheme == "file":
        return "file://" + "/" + rest.lstrip("/")
    return f"{scheme}://{rest.lstrip('/')}"


def local(path):
    """`path` as a local path: file:///x -> /x; a path as it is; another URL as it is."""
    u = url(path)
    return u[len("file://"):] if u and u.startswith("file://") else path


def remote(path) -> str | None:
    """The URL of a store that is not on a local filesystem (file:// is local), or None."""
    u = url(path)
    return None if u is None or u.startswith("file://") else u


def protocol(u: str) -> str:
    return u.split("://", 1)[0]


def shown(options: dict) -> str:
    """Storage options for a message: names, with only PUBLIC values."""
    return ", ".join(f"{k}={v if k in PUBLIC else '***'}" for k, v in sorted(options.items()))


class Options(dict):
    """Storage options as they travel to Dask's workers: a dict whose repr shows no secret
    (a worker logs a failed task's arguments by their repr)."""

    def __repr__(self):
        return f"Options({shown(self)})"


def scrub(text: str, options: dict | None) -> str:
    """A message with every non-public option value blanked out."""
    for key, value in (options or {}).items():
        if key not in PUBLIC and len(str(value)) >= 3:
            text = text.replace(str(value), "***")
    return text


def refuse_non_zarr(u: str, flag: str | None = None, writing=False) -> None:
    """Only Zarr stores live at a URL: an HDF5 file (or anything else) there is one line."""
    name = f"--{flag} {u}" if flag else u
    if u.rstrip("/").lower().endswith(".zarr"):
        return
    if u.rstrip("/").lower().endswith((".h5", ".hdf5")):
        raise UsageError(f"{name} is an HDF5 file at a URL: HDF5 files must be local (or on "
                         "a mounted filesystem); a Zarr store can be remote: "
                         f"'catlr prepare SRC --out {protocol(u)}://.../NAME.zarr'")
    raise UsageError(f"{name} is a URL: catlr {'writes' if writing else 'reads'} only Zarr "
                     f"stores at a URL (NAME.zarr, written by 'catlr prepare SRC --out "
                     f"{protocol(u)}://.../NAME.zarr'); other data must be local or mounted")


def filesystem(u: str, options: dict | None = None, doing: str = "read",
               asynchronous: bool = False):
    """(fsspec filesystem, path inside it) for URL `u`: the one place one is made (the
    reader, the output guard, the remote copy and zarr's writer all take theirs here, with
    its timeouts and retry caps). One line naming `u` when fsspec, the protocol's backend
    or the options are missing or wrong, or when making it fails (a filesystem that
    connects at once, ftp://, says so here; `doing`: "read" or "written", for that line).
    asynchronous: an instance for an event loop, where the filesystem has one (zarr's)."""
    options = dict(options or {})
    scheme = protocol(u)
    try:
        import fsspec
        from fsspec.core import url_to_fs
        from fsspec.registry import known_implementations
    except ImportError:
        raise CatlrError(f"{u} is a URL and reading it needs fsspec, which is not installed: "
                         "pip install \"catlr[dask]\"") from None
    try:
        cls = fsspec.get_filesystem_class(scheme)
    except ValueError:
        raise CatlrError(f"{u}: catlr knows no filesystem for {scheme}:// (fsspec's "
                         "protocols: s3, gs, az, memory, file, ...), check the URL") from None
    except ImportError:
        known = known_implementations.get(scheme, {})
        package = known.get("class", "").split(".")[0]
        fix = (f"pip install {package}" if package and package != "fsspec"
               else known.get("err") or "install its fsspec backend")
        raise CatlrError(f"{u} needs fsspec's {scheme} backend, which is not installed: "
                         f"{fix}") from None
    if scheme == MEMORY and options:
        options = {}  # nothing to configure: the filesystem of this process
    s3 = scheme in ("s3", "s3a")
    if s3:  # a wrong endpoint is one line in seconds, not a minute of retries
        options["config_kwargs"] = {"connect_timeout": 10, "retries": {"max_attempts": 2},
                                    **options.get("config_kwargs", {})}
        options.setdefault("skip_instance_cache", True)  # options are the user's each time
    if asynchronous and getattr(cls, "async_impl", False):
        options["asynchronous"] = True
    try:
        fs, path = url_to_fs(u, **options)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{u}: the storage options ({shown(options)}) are not ones its "
                         f"filesystem takes ({scrub(describe(e, 10_000), options)[:80]}), see "
                         "--storage-option in 'catlr train --help'") from None
    except OSError as e:  # a filesystem that connects when it is made (ftp://)
        raise failure(u, e, options, doing) from None
    except Exception as e:  # one that cannot be made from this URL alone (dir://)
        raise CatlrError(f"{u} cannot be {doing}: fsspec's {scheme} filesystem cannot be made "
                         f"from it ({type(e).__name__}: "
                         f"{scrub(describe(e, 10_000), options)[:80]}), check the URL and "
                         "--storage-option KEY=VALUE") from None
    if s3 and hasattr(fs, "retries"):
        fs.retries = min(fs.retries, 2)  # s3fs's own, over botocore's: 5 by default
    return fs, path


@contextlib.contextmanager
def reaching(u: str, options: dict | None = None, doing: str = "read", passing=()):
    """The one boundary of the filesystem layer: whatever a filesystem raises inside this
    block (botocore's, aiohttp's, an OSError, an AttributeError of a filesystem given a
    URL it cannot take) leaves it as one line naming `u` (failure), except catlr's own
    errors and the exception types in `passing` (FileNotFoundError, where absence is an
    answer)."""
    try:
        yield
    except CatlrError:
        raise
    except Exception as e:
        if isinstance(e, passing):
            raise
        raise failure(u, e, options, doing) from None


def failure(u: str, e: BaseException, options: dict | None = None, doing="read") -> CatlrError:
    """What went wrong reaching `u` (no bucket, no credentials, nothing listening), as one
    line naming it (never an option's secret value)."""
    name = type(e).__name__
    text = scrub(describe(e, 10_000), options)[:160]  # blanked before it is cut
    hint = "check the URL, the endpoint and --storage-option KEY=VALUE"
    if isinstance(e, FileNotFoundError) or name in ("NoSuchBucket", "NoSuchKey"):
        why = f"it does not exist ({text})" if text else "it does not exist"
        hint = "check the bucket and the path"
    elif isinstance(e, PermissionError) or name in ("NoCredentialsError", "ClientError",
                                                      "PartialCredentialsError"):
        why = f"access was refused ({name}: {text})"
        hint = "check the credentials (--storage-option key=... secret=..., or the environment)"
    else:
        why = f"{name}: {text}"
    if protocol(u) == MEMORY:
        hint = "memory:// holds what this process wrote"
    return CatlrError(f"{u} cannot be {doing}: {why}; {hint}"[:600])
