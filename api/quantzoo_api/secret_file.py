"""Secrets that rotate without a restart: a value read from a mounted Secret file, re-read when it changes.

Kubernetes updates a mounted Secret in place: the kubelet writes the new keys into a fresh timestamped
folder and swaps the `..data` symlink atomically, so `<mount>/<key>` resolves to a new file. A `stat()` of
the path (which follows the symlinks) is cheap enough to run on every use; when its identity (inode,
device, mtime, size) moves, the file is read again. Without a file (outside Kubernetes) the value comes
from a plain env var and never changes.

Values are never logged: log lines name the file, not what it holds. A file that cannot be read (mid-swap,
unmounted) keeps the last good value rather than locking everyone out.

Rotation overlap (issue #15, finding 9): each pod's kubelet syncs a rotated Secret on its own schedule
(up to a minute or two apart), so for a while one side holds the new token and the other the old one.
A value rotated out stays valid for `overlap_seconds` after this process saw the new one:
- a server accepts it (`accepts`: the current and the recent previous values, compared in constant time);
- a client that is refused with the current value tries the previous ones (`candidates`).
So no rotation refuses a kill; after the window the old value is refused.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger(__name__)

FILE_SUFFIX = "_FILE"
_REMEMBERED = 8  # previous values kept for redaction (a rotated-out secret is still a secret)
# How long a rotated-out value stays valid: longer than the kubelet's Secret sync (its sync period plus
# the Secret cache TTL, about 1-2 minutes), so both sides hold a common value throughout a rotation.
DEFAULT_OVERLAP_SECONDS = 180.0

Stamp = tuple[int, int, int, int]


def _stamp(path: str) -> Stamp:
    st = os.stat(path)  # follows `<key> -> ..data/<key>` and `..data -> ..<timestamp>`
    return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size)


class SecretFile:
    """The value in force: the file's content (re-read when it changes) if a file is set, else `fallback`."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        fallback: str = "",
        *,
        label: str = "",
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.fspath(path) if path else None
        self.overlap_seconds = overlap_seconds
        self._clock = clock
        self._retired: list[tuple[str, float]] = []  # (value rotated out, when), newest first
        self.label = label or (os.path.basename(self.path) if self.path else "secret")
        self._fallback = fallback.strip()
        self._lock = threading.Lock()
        self._value = ""
        self._stamp: Stamp | None = None
        self._seen: list[str] = [self._fallback] if self._fallback else []
        self.reloads = 0
        """How many times a changed file was read (the first read included)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], name: str) -> SecretFile:
        """From `<NAME>_FILE` (a path, preferred) and `<NAME>` (a value, the fallback)."""
        return cls(env.get(name + FILE_SUFFIX) or None, env.get(name, ""), label=name)

    @property
    def from_file(self) -> bool:
        return self.path is not None

    def stamp(self) -> Stamp | None:
        """The file's identity now (None without a file or when it cannot be stat'ed)."""
        if self.path is None:
            return None
        try:
            return _stamp(self.path)
        except OSError:
            return None

    def current(self) -> str:
        """The value in force ("" when none is configured)."""
        if self.path is None:
            return self._fallback
        try:
            stamp = _stamp(self.path)
        except OSError as exc:
            log.warning(
                "%s: file unreadable, keeping the previous value (%s)", self.label, type(exc).__name__
            )
            return self._value or self._fallback
        with self._lock:
            if stamp != self._stamp:
                try:
                    with open(self.path, encoding="utf-8") as fh:
                        value = fh.read().strip()
                except OSError as exc:
                    log.warning(
                        "%s: file unreadable, keeping the previous value (%s)", self.label, type(exc).__name__
                    )
                    return self._value or self._fallback
                changed = self._stamp is not None and value != self._value
                if changed and self._value:
                    self._retired = [(self._value, self._clock()), *self._retired][:_REMEMBERED]
                self._value, self._stamp = value, stamp
                self.reloads += 1
                if value and value not in self._seen:
                    self._seen = [*self._seen, value][-_REMEMBERED:]
                if changed:
                    log.info("%s: new value read from %s (rotation picked up)", self.label, self.path)
            return self._value or self._fallback

    def candidates(self) -> list[str]:
        """The values valid now: the current one first, then those rotated out less than
        `overlap_seconds` ago (newest first). A client tries them in order when refused."""
        current = self.current()
        now = self._clock()
        recent = [v for v, at in self._retired if now - at < self.overlap_seconds and v and v != current]
        return [v for v in [current, *recent] if v]

    def accepts(self, presented: str | None) -> bool:
        """Whether `presented` is a valid value now (the current one or one still in its overlap window).
        Constant-time against every candidate, so the answer's timing says nothing about which matched."""
        if not presented:
            return False
        matched = False
        for value in self.candidates():
            matched |= secrets.compare_digest(presented.encode("utf-8"), value.encode("utf-8"))
        return matched

    def known(self) -> list[str]:
        """Every value this process has held (current and rotated out), for redaction."""
        self.current()
        return list(self._seen)


def read_together(sources: Sequence[SecretFile], attempts: int = 3) -> tuple[str, ...]:
    """The current values of several files of one Secret, read as one consistent set.

    The kubelet swaps all keys of a Secret at once, but reading two files one after the other can straddle
    the swap (new key, old secret). If any file's identity moved while reading, read them all again.
    """
    values: tuple[str, ...] = ()
    for _ in range(max(attempts, 1)):
        before = [s.stamp() for s in sources]
        values = tuple(s.current() for s in sources)
        if [s.stamp() for s in sources] == before:
            break
    return values
