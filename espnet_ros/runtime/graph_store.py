# Copyright 2026 The espnet_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
The compiled-graph cache on disk: a private folder of entries, and what it trusts.

An entry is a package (``<stem>.pt2``) and a JSON sidecar (``<stem>.json``) holding its
:class:`~espnet_ros.runtime.graph_key.GraphKey` and the package's sha256; the stem comes
from the key's checked parts (:meth:`GraphKey.stem`). A package is a zip holding a shared
library that is loaded into the process, so the folder is trusted only as far as it is
private:

- the folder is created 0700; a folder (or an entry in it) that is a symlink, is not owned
  by the current user or is writable by group or others is not used at all: one
  :class:`UntrustedCacheError` naming it and what to do, and the caller stays eager;
- every file is opened relative to the checked folder's descriptor with ``O_NOFOLLOW``
  (packages, sidecars, locks, builds in progress), so a planted link is never followed;
- the sidecar's sha256 is integrity against a truncated or corrupt file, not protection
  against someone who can write the folder (they could write a matching sidecar): that is
  what the ownership and permission checks are for;
- anything odd in an entry's place (a directory, a link, an unreadable or malformed sidecar,
  a stale key) is removed, so that it is rebuilt, never sticky.

Builds work in ``build-<random>/`` folders (0700) whose ``owner.lock`` is held by the parent
and the builder child; :meth:`Store.sweep` removes those whose holders are gone, and entry
locks (``<stem>.lock``) whose holder is gone, so a killed or failed build leaves nothing.

The folder is ``$ESPNET_ROS_CACHE`` if set, else ``$XDG_CACHE_HOME/espnet_ros`` (by default
``~/.cache/espnet_ros``), plus ``graphs/``.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from pathlib import Path
import re
import secrets
import shutil
import stat
import time
from typing import Any, Iterator, Mapping, Optional

from espnet_ros.runtime.graph_key import GraphKey
from espnet_ros.zoo.user_files import parse_json, UserFileError

CACHE_ENV = 'ESPNET_ROS_CACHE'
GRAPHS_FOLDER = 'graphs'
PACKAGE_SUFFIX = '.pt2'
SIDECAR_SUFFIX = '.json'
LOCK_SUFFIX = '.lock'
BUILD_PREFIX = 'build-'
OWNER_LOCK = 'owner.lock'
FOLDER_MODE = 0o700
FILE_MODE = 0o600
# Group or others may write: anyone in them could plant a library.
SHARED_WRITE_BITS = stat.S_IWGRP | stat.S_IWOTH
# What builders of the earlier layout left beside the entries when killed: job files and
# partial packages and sidecars. Removed once old enough that no such builder still runs.
LEGACY_LEFTOVER = re.compile(r'job-.+\.pt|.+\.partial(\.pt2)?|.+\.json\.partial')
LEGACY_LEFTOVER_AGE_S = 24 * 3600
MAX_SIDECAR_BYTES = 64 << 10
READ_CHUNK = 1 << 20
# Tries at an entry lock: each either takes it or clears what was odd in its place.
MAX_LOCK_ATTEMPTS = 16
NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class GraphCacheError(RuntimeError):
    """A cache entry that cannot be used or built; the message names the file and why."""


class UntrustedCacheError(GraphCacheError):
    """The cache folder (or an entry) is not private: nothing in it is used."""


def cache_folder(environ: Mapping[str, str] = os.environ) -> Path:
    """Return the folder of compiled graphs (see the module docstring for the order)."""
    root = environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / GRAPHS_FOLDER
    xdg = environ.get('XDG_CACHE_HOME') or str(Path('~/.cache').expanduser())
    return Path(xdg) / 'espnet_ros' / GRAPHS_FOLDER


def _advice(folder: Path) -> str:
    return (f'compiled graphs are not used from it (serving eager). Make it yours and private '
            f'(chown "$USER" {folder} && chmod 700 {folder}), or set {CACHE_ENV} to a '
            'folder of your own')


def untrusted_reason(status: os.stat_result) -> str:
    """Return why a file or folder with ``status`` is not private, or '' if it is."""
    if status.st_uid != os.geteuid():
        return f'owned by uid {status.st_uid}, not by this user (uid {os.geteuid()})'
    if status.st_mode & SHARED_WRITE_BITS:
        return f'writable by group or others (mode {stat.S_IMODE(status.st_mode):o})'
    return ''


def _is_link_error(error: OSError) -> bool:
    # O_NOFOLLOW on a link: ELOOP; with O_DIRECTORY as well, ENOTDIR.
    return error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def remove_name(folder_fd: int, name: str) -> None:
    """Remove whatever ``name`` is in the folder (file, link, folder); never follow a link."""
    try:
        status = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(status.st_mode):
        shutil.rmtree(name, dir_fd=folder_fd, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=folder_fd)


class Store:
    """The cache folder, opened and checked: ours, private, not a link."""

    def __init__(self, folder: Path, descriptor: int) -> None:
        """Wrap an open descriptor of ``folder`` (use :func:`open_store`)."""
        self.folder = folder
        self.fd = descriptor

    def close(self) -> None:
        """Close the folder's descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> 'Store':
        """Use as a context manager: closed at the end."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close the folder's descriptor."""
        self.close()

    def path_of(self, name: str) -> str:
        """Return a path to ``name`` that resolves through this checked folder, not its path."""
        return f'/proc/self/fd/{self.fd}/{name}'

    def open_file(self, name: str, flags: int = os.O_RDONLY, mode: int = FILE_MODE) -> int:
        """Open ``name`` in the folder without following a link; refuse one not private."""
        descriptor = os.open(name, flags | NO_FOLLOW, mode, dir_fd=self.fd)
        status = os.fstat(descriptor)
        reason = untrusted_reason(status) or (
            '' if stat.S_ISREG(status.st_mode) else 'not a regular file')
        if reason:
            os.close(descriptor)
            raise UntrustedCacheError(f'{self.folder / name} is {reason}')
        return descriptor

    def sweep(self) -> None:
        """Remove builds and entry locks whose holders are gone (killed or failed builds)."""
        now = time.time()
        for name in os.listdir(self.fd):
            if name.startswith(BUILD_PREFIX):
                if not self._held(name + '/' + OWNER_LOCK):
                    remove_name(self.fd, name)
            elif name.endswith(LOCK_SUFFIX):
                if not self._held(name):
                    remove_name(self.fd, name)
            elif LEGACY_LEFTOVER.fullmatch(name):
                with contextlib.suppress(FileNotFoundError):
                    status = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                    if now - status.st_mtime > LEGACY_LEFTOVER_AGE_S:
                        remove_name(self.fd, name)

    def _held(self, name: str) -> bool:
        """Return True if a live process holds the lock file ``name`` (False if none is)."""
        try:
            descriptor = os.open(name, os.O_RDONLY | NO_FOLLOW, dir_fd=self.fd)
        except OSError:
            return False  # missing or a link: nothing holds it
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)
        return False

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """
        Hold the exclusive lock file ``name`` (created 0600, never through a link).

        The holder removes the file when done. A waiter that then holds a file no longer in
        place (removed or replaced while it waited) takes the lock again on the new one, so
        two processes never build the same entry.
        """
        for _ in range(MAX_LOCK_ATTEMPTS):
            try:
                descriptor = self.open_file(name, os.O_RDWR | os.O_CREAT)
            except UntrustedCacheError:
                remove_name(self.fd, name)  # something odd in the lock's place
                continue
            except OSError as error:
                if not _is_link_error(error):
                    raise
                remove_name(self.fd, name)  # a planted link: removed, never followed
                continue
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                current = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            held = os.fstat(descriptor)
            if current is not None and (current.st_ino, current.st_dev) == (
                    held.st_ino, held.st_dev):
                break
            os.close(descriptor)  # a stale lock: its file was removed while this one waited
        else:
            raise GraphCacheError(f'{self.folder / name}: cannot take the lock (something in '
                                  f'its place cannot be removed)')
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self.fd)
            os.close(descriptor)

    def new_build(self) -> 'Build':
        """Create a private ``build-<random>/`` folder whose owner lock this process holds."""
        self.sweep()
        name = BUILD_PREFIX + secrets.token_hex(8)
        os.mkdir(name, FOLDER_MODE, dir_fd=self.fd)
        descriptor = os.open(name, os.O_RDONLY | os.O_DIRECTORY | NO_FOLLOW, dir_fd=self.fd)
        lock = os.open(OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | NO_FOLLOW,
                       FILE_MODE, dir_fd=descriptor)
        fcntl.flock(lock, fcntl.LOCK_EX)
        return Build(self.folder / name, descriptor, lock)


class Build:
    """A build in progress: a private folder in the cache and the lock that marks it live."""

    def __init__(self, folder: Path, descriptor: int, lock: int) -> None:
        """Wrap the build folder's descriptor and its held owner lock."""
        self.folder = folder
        self.fd = descriptor
        self.lock = lock

    def path_of(self, name: str) -> str:
        """Return a path to ``name`` in the build folder that resolves through its descriptor."""
        return f'/proc/self/fd/{self.fd}/{name}'

    def create(self, name: str) -> int:
        """Create ``name`` (0600, new, never through a link) and return its descriptor."""
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_FOLLOW, FILE_MODE,
                       dir_fd=self.fd)

    def remove(self, parent_fd: int) -> None:
        """Delete the build folder and release its lock."""
        remove_name(parent_fd, self.folder.name)
        self.close()

    def close(self) -> None:
        """Release the descriptors (and so the owner lock, if no child holds it too)."""
        for descriptor in (self.fd, self.lock):
            with contextlib.suppress(OSError):
                os.close(descriptor)
        self.fd = self.lock = -1


def _ensure_folder(folder: Path) -> None:
    """Create the cache folder and its own parent 0700 where missing."""
    folder.parent.parent.mkdir(parents=True, exist_ok=True)
    for level in (folder.parent, folder):
        with contextlib.suppress(FileExistsError):
            os.mkdir(level, FOLDER_MODE)


def open_store(folder: Path, *, create: bool = True) -> Optional[Store]:
    """
    Return the cache folder, checked; None if it does not exist and ``create`` is False.

    Raises :class:`UntrustedCacheError` (naming the folder and what to do) if it is a link,
    not owned by this user or writable by group or others.
    """
    if create:
        try:
            _ensure_folder(folder)
        except OSError as error:
            raise GraphCacheError(f'cannot create the cache folder {folder}: '
                                  f'{error.strerror or error}') from None
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | NO_FOLLOW)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as error:
        if os.path.islink(folder):
            raise UntrustedCacheError(f'the compiled-graph cache {folder} is a symlink; '
                                      f'{_advice(folder)}') from None
        raise GraphCacheError(f'cannot write to the cache folder {folder}: '
                              f'{error.strerror or error}') from None
    reason = untrusted_reason(os.fstat(descriptor))
    if reason:
        os.close(descriptor)
        raise UntrustedCacheError(f'the compiled-graph cache {folder} is {reason}; '
                                  f'{_advice(folder)}')
    return Store(folder, descriptor)


def sha256_of_descriptor(descriptor: int) -> str:
    """Return the sha256 of an open file, read from its start."""
    digest = hashlib.sha256()
    os.lseek(descriptor, 0, os.SEEK_SET)
    while chunk := os.read(descriptor, READ_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


class Entry:
    """The files of one cache entry: the package and its sidecar."""

    def __init__(self, folder: Path, key: GraphKey) -> None:
        """Name the entry of ``key`` in ``folder``."""
        self.key = key
        self.folder = Path(folder)
        self.package = self.folder / f'{key.stem()}{PACKAGE_SUFFIX}'
        self.sidecar = self.folder / f'{key.stem()}{SIDECAR_SUFFIX}'
        self.lock_name = f'{key.stem()}{LOCK_SUFFIX}'

    def open_store(self, *, create: bool = True) -> Optional[Store]:
        """Return the entry's cache folder, checked (see :func:`open_store`)."""
        return open_store(self.folder, create=create)

    def exists(self) -> bool:
        """Return True if either file (or anything in their place) is there."""
        return any(os.path.lexists(path) for path in (self.package, self.sidecar))

    def _read_sidecar(self, store: Store) -> tuple[GraphKey, str]:
        try:
            descriptor = store.open_file(self.sidecar.name)
            with os.fdopen(descriptor, 'rb') as stream:
                data = stream.read(MAX_SIDECAR_BYTES + 1)
            if len(data) > MAX_SIDECAR_BYTES:
                raise UserFileError(f'larger than {MAX_SIDECAR_BYTES} bytes')
            recorded = parse_json(data.decode(), self.sidecar)
            return GraphKey.from_json(recorded['key']), str(recorded['package_sha256'])
        except UntrustedCacheError as error:
            raise GraphCacheError(f'{error}; not used') from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            reason = ('a symlink' if isinstance(error, OSError) and _is_link_error(error)
                      else f'{type(error).__name__}: {error}')
            raise GraphCacheError(
                f'{self.sidecar}: not a readable cache record ({reason})') from None

    @contextlib.contextmanager
    def checked(self, store: Store) -> Iterator[str]:
        """
        Check the entry and yield a path to its package valid while the context lasts.

        The sidecar must name this key and the package's sha256; both must be regular
        files owned by this user and not writable by others. The path resolves through the
        open descriptor of the very file that was hashed, so nothing can be swapped in
        between. Raises :class:`GraphCacheError` saying why otherwise.
        """
        key, sha256 = self._read_sidecar(store)
        if key != self.key:
            raise GraphCacheError(f'{self.sidecar}: made for another model, size or machine')
        try:
            descriptor = store.open_file(self.package.name)
        except UntrustedCacheError as error:
            raise GraphCacheError(f'{error}; not used') from None
        except OSError as error:
            reason = 'a symlink' if _is_link_error(error) else (error.strerror or str(error))
            raise GraphCacheError(f'{self.package}: {reason}') from None
        try:
            found = sha256_of_descriptor(descriptor)
            if found != sha256:
                raise GraphCacheError(f'{self.package}: sha256 {found[:12]}... is not the '
                                      f'recorded {sha256[:12]}... (corrupt or changed)')
            yield f'/proc/self/fd/{descriptor}'
        finally:
            os.close(descriptor)

    def check(self) -> None:
        """Raise :class:`GraphCacheError` unless the entry checks out (see :meth:`checked`)."""
        store = self.open_store(create=False)
        if store is None:
            raise GraphCacheError(f'{self.package}: missing')
        with store, self.checked(store):
            pass

    def remove(self, store: Optional[Store] = None) -> None:
        """Delete both files, or whatever is in their place (a bad entry is rebuilt)."""
        own = store is None
        store = store or self.open_store(create=False)
        if store is None:
            return
        try:
            for path in (self.package, self.sidecar):
                remove_name(store.fd, path.name)
        finally:
            if own:
                store.close()

    def install(self, store: Store, build: Build, package_name: str,
                build_seconds: float) -> None:
        """Move a built package into place, then write its sidecar (each atomically)."""
        descriptor = os.open(package_name, os.O_RDONLY | NO_FOLLOW, dir_fd=build.fd)
        try:
            os.fchmod(descriptor, FILE_MODE)  # whatever the umask made of it
            sha256 = sha256_of_descriptor(descriptor)
        finally:
            os.close(descriptor)
        record = {'key': self.key.to_json(), 'package_sha256': sha256,
                  'build_seconds': round(build_seconds, 1)}
        partial = build.create(self.sidecar.name)
        with os.fdopen(partial, 'w') as stream:
            stream.write(json.dumps(record, indent=1))
            stream.flush()
            os.fsync(stream.fileno())
        os.rename(package_name, self.package.name, src_dir_fd=build.fd, dst_dir_fd=store.fd)
        os.rename(self.sidecar.name, self.sidecar.name, src_dir_fd=build.fd,
                  dst_dir_fd=store.fd)
