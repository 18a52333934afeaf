"""The flood gate's promises: Telegram's per-chat, per-group and global limits hold, the global
budget is shared fairly across agents, 429s are obeyed, and cancelled waiters leave no trace.

Limits are scaled down so that the real clock runs each test in well under a second.  Times
are read with the gate's clock right after `wait()` returns (nothing is awaited in between),
so the checks count grants per window; the only wall-clock bounds follow from the limits.
"""

from __future__ import annotations

import random
import time

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from hermesd.ratelimit import FloodGate, FloodLimits

EPS = 1e-3  # a grant is stamped a few microseconds before the test reads the clock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Log:
    """Sends through a gate and records who got each grant to which chat, and when."""

    def __init__(self, gate: FloodGate) -> None:
        self.gate = gate
        self.grants: list[tuple[str, int, float]] = []

    async def send(self, agent: str, chat_id: int) -> None:
        await self.gate.wait(agent, chat_id)
        self.grants.append((agent, chat_id, time.monotonic()))

    def times(self, chat_id: int | None = None) -> list[float]:
        return [t for _a, c, t in self.grants if chat_id is None or c == chat_id]

    def agents(self) -> list[str]:
        return [a for a, _c, _t in self.grants]


def assert_at_most(times: list[float], count: int, window: float) -> None:
    """No `window` seconds hold more than `count` of `times`."""
    times = sorted(times)
    for first, later in zip(times, times[count:], strict=False):
        assert later - first >= window - EPS, (count, window, times)


async def test_sends_to_one_chat_are_spaced() -> None:
    limits = FloodLimits(per_chat_interval=0.03, global_per_second=1000)
    log = Log(FloodGate(limits))
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            for agent in "abc":
                for _ in range(4):
                    tg.start_soon(log.send, agent, 7)
            tg.start_soon(log.send, "a", 8)  # another chat is not held up by chat 7
    assert len(log.grants) == 13
    assert_at_most(log.times(7), 1, limits.per_chat_interval)
    assert log.times(8)[0] < log.times(7)[1]


async def test_group_chats_are_capped_per_window_and_private_chats_are_not() -> None:
    limits = FloodLimits(per_chat_interval=0, group_per_minute=3, group_window=0.15,
                         global_per_second=1000)
    log = Log(FloodGate(limits))
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            for i in range(9):
                tg.start_soon(log.send, "ab"[i % 2], -100)
                tg.start_soon(log.send, "ab"[i % 2], 100)
    assert_at_most(log.times(-100), 3, limits.group_window)
    private = log.times(100)
    assert len(private) == 9 and private[-1] - private[0] < limits.group_window


async def test_global_budget_is_capped_per_window() -> None:
    limits = FloodLimits(per_chat_interval=0, global_per_second=5, global_window=0.06)
    log = Log(FloodGate(limits))
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(log.send, "ab"[i % 2], i)
    assert len(log.grants) == 20
    assert_at_most(log.times(), 5, limits.global_window)


async def test_one_reply_is_not_starved_by_an_agent_flooding_many_chats() -> None:
    limits = FloodLimits(per_chat_interval=0, global_per_second=5, global_window=0.2)
    log = Log(FloodGate(limits))

    async def reply_then_stop() -> None:
        await log.send("b", 999)
        tg.cancel_scope.cancel()

    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            for chat in range(50):
                tg.start_soon(log.send, "a", chat)
            await wait_all_tasks_blocked()
            assert log.gate.waiting() == 50 - limits.global_per_second
            tg.start_soon(reply_then_stop)
    # "a" took the first window's slots and keeps its turn for one more; then it is "b"'s.
    assert log.agents().index("b") <= limits.global_per_second + 1


async def test_global_slots_go_round_robin_fifo_within_an_agent() -> None:
    limits = FloodLimits(per_chat_interval=0, global_per_second=3, global_window=0.05)
    gate = FloodGate(limits)
    log = Log(gate)
    gate.retry_after(None, 0.3)  # everyone queues up first, in agent blocks
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            for agent in "abc":
                for i in range(5):
                    tg.start_soon(log.send, agent, ord(agent) * 100 + i)
                await wait_all_tasks_blocked()
    assert log.agents() == list("abc") * 5
    for agent in "abc":
        assert [c for a, c, _t in log.grants if a == agent] == sorted(
            c for a, c, _t in log.grants if a == agent)


async def test_retry_after_for_a_chat_holds_only_that_chat() -> None:
    log = Log(FloodGate(FloodLimits(per_chat_interval=0)))
    started = time.monotonic()
    log.gate.retry_after(1, 0.15)
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            tg.start_soon(log.send, "a", 1)
            tg.start_soon(log.send, "a", 2)
    assert [c for _a, c, _t in log.grants] == [2, 1]
    assert log.times(1)[0] - started >= 0.15


async def test_global_retry_after_holds_everything() -> None:
    log = Log(FloodGate(FloodLimits(per_chat_interval=0)))
    started = time.monotonic()
    log.gate.retry_after(None, 0.15)
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            for chat in (1, 2, -3):
                tg.start_soon(log.send, "ab"[chat % 2], chat)
    assert len(log.grants) == 3
    assert min(log.times()) - started >= 0.15


async def test_cancelled_waiter_takes_no_slot() -> None:
    limits = FloodLimits(per_chat_interval=0, global_per_second=1, global_window=0.2)
    log = Log(FloodGate(limits))
    with anyio.fail_after(3):
        await log.send("a", 1)
        with anyio.move_on_after(0.05):
            await log.send("a", 2)
        assert log.gate.waiting() == 0 and len(log.grants) == 1
        await log.send("b", 3)  # the slot after the window's one is still free
    # Had the cancelled waiter used the second window's slot, this would be the third's.
    assert log.times(3)[0] - log.times(1)[0] < 1.9 * limits.global_window


async def test_woken_waiter_cancelled_before_it_runs_passes_its_turn_on() -> None:
    now = [0.0]  # a frozen clock: nothing moves unless the test says so
    limits = FloodLimits(per_chat_interval=0, global_per_second=1, global_window=10)
    gate = FloodGate(limits, clock=lambda: now[0])
    granted: list[str] = []
    scope_a = anyio.CancelScope()

    async def send(agent: str, chat_id: int) -> None:
        await gate.wait(agent, chat_id)
        granted.append(agent)

    async def send_a() -> None:
        with scope_a:
            await send("a", 1)

    with anyio.fail_after(3):
        await gate.wait("z", 9)  # the window's one slot
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_a)
            tg.start_soon(send, "b", 2)
            await wait_all_tasks_blocked()
            assert gate.waiting() == 2
            now[0] = 10.0  # the slot is free again; "a" is first in turn
            tg.start_soon(send, "c", 3)  # its check wakes "a" ...
            scope_a.cancel()  # ... which is cancelled before it runs
            await wait_all_tasks_blocked()
            assert granted == ["b"] and gate.waiting() == 1
            tg.cancel_scope.cancel()
    assert gate.waiting() == 0


async def test_limits_hold_with_waiters_cancelled_at_random() -> None:
    limits = FloodLimits(per_chat_interval=0.02, group_per_minute=2, group_window=0.1,
                         global_per_second=4, global_window=0.05)
    log = Log(FloodGate(limits))
    rng = random.Random(7)
    kept: list[tuple[str, int]] = []

    async def maybe_cancelled(agent: str, chat_id: int, deadline: float | None) -> None:
        with anyio.move_on_after(deadline):
            await log.send(agent, chat_id)

    with anyio.fail_after(4):
        async with anyio.create_task_group() as tg:
            for i in range(40):
                agent, chat = rng.choice("abc"), rng.choice([1, 2, 3, -1, -2])
                deadline = rng.uniform(0, 0.3) if i % 3 == 0 else None
                if deadline is None:
                    kept.append((agent, chat))
                tg.start_soon(maybe_cancelled, agent, chat, deadline)
    assert log.gate.waiting() == 0
    assert len(log.grants) >= len(kept)
    assert_at_most(log.times(), limits.global_per_second, limits.global_window)
    for chat in (1, 2, 3, -1, -2):
        assert_at_most(log.times(chat), 1, limits.per_chat_interval)
    for chat in (-1, -2):
        assert_at_most(log.times(chat), limits.group_per_minute, limits.group_window)


async def test_held_says_whether_a_429_holds_that_chat_now() -> None:
    now = [100.0]
    gate = FloodGate(clock=lambda: now[0])
    gate.retry_after(1, 5.0)
    assert gate.held(1) and not gate.held(2)
    gate.retry_after(None, 2.0)
    assert gate.held(2)
    now[0] = 103.0
    assert gate.held(1) and not gate.held(2)
    now[0] = 106.0
    assert not gate.held(1)
