"""Token rotation overlap (issue #15, finding 9) with real files rotated as the kubelet does it (a fresh
timestamped folder, `..data` swapped atomically): the previous value stays valid for the overlap window,
then is refused. The clock is injected so the window's end is tested without waiting."""

from __future__ import annotations

from pathlib import Path

from quantzoo_api.secret_file import SecretFile

from hack.devcluster.podrunner import write_atomically


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _mount(root: Path, token: str) -> Path:
    write_atomically(root, {"token": token.encode()}, 0o440)
    return root / "token"


def test_the_previous_token_is_accepted_for_the_overlap_window_then_refused(tmp_path):
    clock = Clock()
    source = SecretFile(_mount(tmp_path, "old-token"), overlap_seconds=120, clock=clock)
    assert source.accepts("old-token")
    _mount(tmp_path, "new-token")  # rotated
    assert source.accepts("new-token")
    assert source.accepts("old-token")  # a kill signed with the old token is not refused
    assert source.candidates() == ["new-token", "old-token"]
    clock.now += 119
    assert source.accepts("old-token")
    clock.now += 2
    assert not source.accepts("old-token")
    assert source.candidates() == ["new-token"]
    assert not source.accepts("")
    assert not source.accepts("made-up")


def test_two_rotations_in_a_row_keep_both_recent_values(tmp_path):
    clock = Clock()
    source = SecretFile(_mount(tmp_path, "a"), overlap_seconds=60, clock=clock)
    source.current()
    _mount(tmp_path, "b")
    source.current()
    clock.now += 10
    _mount(tmp_path, "c")
    assert source.candidates() == ["c", "b", "a"]
    clock.now += 55
    assert source.candidates() == ["c", "b"]


def test_without_a_file_there_is_one_value(tmp_path):
    source = SecretFile(None, "env-token")
    assert source.accepts("env-token")
    assert source.candidates() == ["env-token"]
