"""The real-Zuul harness (tests/zuul/) from any checkout path: the executor's job dirs, where Ansible puts its ssh
control sockets, must leave room for the longest socket name whatever the checkout's path length."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.zuul.harness import CONTROL_SOCKET_TAIL, SOCKET_PATH_MAX, ZuulHarness


@pytest.mark.parametrize("checkout", ["/w", "/check/work/main", "/home/a-donor-engineer/src/opendev/" + "x" * 60])
def test_job_dirs_leave_room_for_ansibles_control_sockets(checkout):
    harness = ZuulHarness(Path(checkout) / ".zuul-harness")
    longest = str(harness.builds) + "/0123456789abcdef0123456789abcdef/.ansible/cp/0123456789.0123456789abcdef"
    assert len(longest) == len(str(harness.builds)) + CONTROL_SOCKET_TAIL
    assert len(longest) <= SOCKET_PATH_MAX, longest


def test_two_harness_dirs_get_two_job_dirs():
    assert ZuulHarness(Path("/a/.zuul-harness")).builds != ZuulHarness(Path("/b/.zuul-harness")).builds
