"""The control block: one shared-memory page per role that `syndicate status` reads.

    /syn.<engine>.control
    ┌────────── header (64 B): magic, version, slots, slot_bytes, supervisor pid, created ─────┐
    │ slot 0  u64 fields: pid, state, heartbeat, started, restarts, … counters, sums (64 × 8 B) │
    │         role name (32 B) · current task (64 B, under a sequence counter)                  │
    │         histograms: HISTOGRAMS × BUCKETS u64 counts, log-scale in nanoseconds             │
    │ slot 1  …                                                                                 │
    └───────────────────────────────────────────────────────────────────────────────────────────┘

Who writes what: each field has exactly one writer at a time.  The role writes its state,
heartbeat, counters and histograms; the supervisor writes pid, restarts and what its watchdog
measures (private memory, CPU); the process that signals an interrupt writes `sent_ns`.  Readers
(status, the watchdog) never block anyone and never signal.

Why plain memoryview stores are enough here: every field is a naturally aligned u64 written and
read through `memoryview.cast('Q')`, which is one 64-bit load or store in C, single-copy atomic on
x86-64 and on ARM64 (a torn value is impossible; ARCHITECTURE.md measured struct.pack_into tearing
and memoryview.cast not).  No field's meaning depends on the order in which another field becomes
visible, except the task name, which sits under a sequence counter (a seqlock: odd while being
written) so a reader retries instead of showing half a name.  Publication of *records* between
processes needs real ordering and lives in engine/core/ring.py.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum

import posix_ipc
import mmap

from .wiring import segment_name

MAGIC = 0x53594E4443544C31  # "SYNDCTL1"
VERSION = 1
HEADER_BYTES = 64
U64_FIELDS = 64
NAME_BYTES = 32
TASK_BYTES = 64
BUCKETS = 128          # 4 per octave from 1 ns: bucket 127 starts at 2**31.75 ns ≈ 3.6 s
SUB = 4


class State(IntEnum):
    EMPTY = 0
    STARTING = 1
    BACKGROUND = 2
    IDLE = 3          # nothing due: waiting, not working
    SWITCHING = 4     # interrupt seen: pausing background work, saving task state
    HANDLING = 5      # analysing the event
    PAUSED = 6        # background work paused by the operator (interrupts still handled)
    STOPPING = 7
    RESTARTING = 8    # supervisor: died, restart scheduled
    STOPPED = 9       # supervisor: exited and will not be restarted


class F(IntEnum):
    """u64 field indices in a slot."""
    PID = 0
    STATE = 1
    HEARTBEAT_NS = 2      # CLOCK_MONOTONIC of the role's last loop turn
    STARTED_NS = 3        # wall clock (time_ns) when this incarnation started
    RESTARTS = 4          # supervisor-owned
    TASK_SEQ = 5          # seqlock over the task name
    FLAGS = 6
    SENT_NS = 7           # monotonic time the last interrupt was sent (sender-owned)
    MEM_PRIVATE = 8       # supervisor-owned: bytes of private (anonymous) memory
    CPU_PERMILLE = 9      # supervisor-owned: CPU use over the last watchdog interval, 1/1000 core
    WATCHDOG_ACTIONS = 10  # supervisor-owned
    LAST_EXIT = 11        # supervisor-owned: last exit status (signal = 1000 + signum)
    BOOST = 12            # 1 when the interrupt boost (SCHED_FIFO) is available to this role
    SWITCHES_BROKEN = 13  # supervisor-owned: the role died mid-switch (saving or handling)
    # role-owned counters
    SWITCHES = 16
    EVENTS = 17
    EVENTS_LOST = 18
    COALESCED = 19        # interrupts that found their events already handled
    DECISIONS = 20
    CHECKPOINTS = 21
    LATE_SAVES = 22
    SLICES = 23
    OVERRUNS = 24         # background steps that ran past the slice budget
    BUSY_NS = 25          # time in task work
    DUE_NS = 26           # time during which some task was due (efficiency = BUSY/DUE)
    TASK_RUNS = 27
    TASK_DONE = 28
    MISSED_INTERVALS = 29
    INTERRUPTS = 30       # signals seen
    DISCOVERIES = 31
    SHED = 32             # times the role started shedding load (memory or operator)
    CHECKPOINT_ERRORS = 33
    TASK_ERRORS = 34
    DECISIONS_DROPPED = 35  # decisions too large for the outbox's slots (logged)
    RESTORE_SAVED = 36    # task states in the checkpoint each start found (summed over starts)
    RESTORE_DONE = 37     # of those, the ones restored (knowledge retention = DONE / SAVED)
    HIST_SUM_NS = 40      # 40 .. 40 + HISTOGRAMS - 1: each histogram's sum of observations (ns)


class Flag(IntEnum):
    PAUSED = 1
    SHEDDING = 2             # shedding, for either reason below
    SHED_BY_OPERATOR = 4     # `ctl ROLE shed`: holds until `ctl ROLE unshed`
    SHED_BY_MEMORY = 8       # the watchdog's soft memory limit: lifted by the watchdog


class H(IntEnum):
    """Latency histograms (nanoseconds)."""
    SIGNAL = 0     # interrupt sent -> signal seen by the role
    PAUSE = 1      # signal seen -> background work paused (the safe point)
    SAVE = 2       # paused -> task state saved (checkpoint hook)
    SWITCH = 3     # interrupt sent -> handling started (the "switch time")
    DECIDE = 4     # handling started -> decision written
    EVENT = 5      # event written to the ring -> decision written
    RESUME = 6     # decision written -> background resumed
    SLICE = 7      # one background slice
    DETECT = 8     # a source's input arrived -> its record written to the ring (chain monitors:
                   # a log's bytes received -> its pool record in events.<chain>)


HISTOGRAMS = len(H)
SLOT_U64 = U64_FIELDS + (NAME_BYTES + TASK_BYTES) // 8 + HISTOGRAMS * BUCKETS
SLOT_BYTES = (SLOT_U64 * 8 + 4095) // 4096 * 4096
_NAME_OFF = U64_FIELDS            # in u64 units
_TASK_OFF = _NAME_OFF + NAME_BYTES // 8
_HIST_OFF = _TASK_OFF + TASK_BYTES // 8
_SUM_OFF = int(F.HIST_SUM_NS)     # a plain int: an enum member costs a lookup per observation


def bucket_of(ns: int) -> int:
    """Log-scale bucket, 4 per octave: exact integer arithmetic, no log()."""
    if ns < 4:
        return max(ns, 0)
    n = ns.bit_length()
    b = SUB * (n - 1) + ((ns >> (n - 3)) & (SUB - 1))
    return b if b < BUCKETS else BUCKETS - 1


def bucket_low(b: int) -> int:
    """Smallest ns value that falls in bucket b."""
    if b < 4:
        return b
    if b < 8:
        return 4  # buckets 4..7 are never used: 4..7 ns fall in 8..11
    octave, frac = divmod(b, SUB)
    return (SUB + frac) << (octave - 2)


def percentile_from_buckets(counts: list[int], q: float) -> float | None:
    """Estimate (ns) of the q-th percentile: the geometric middle of the bucket holding it."""
    total = sum(counts)
    if not total:
        return None
    target = q / 100.0 * total
    run = 0
    for b, c in enumerate(counts):
        run += c
        if run >= target and c:
            lo, hi = bucket_low(b), bucket_low(b + 1) if b + 1 < BUCKETS else bucket_low(b) * 2
            return (lo * max(hi - 1, lo)) ** 0.5
    return None


class ControlBlock:
    """Maps /syn.<engine>.control.  Created by the supervisor; roles inherit it across fork."""

    def __init__(self, name: str, shm: posix_ipc.SharedMemory, mm: mmap.mmap):
        self.name, self._shm, self._mm = name, shm, mm
        self.u64 = memoryview(mm).cast("Q")
        self.raw = memoryview(mm)
        self.slots = self.u64[2]

    @staticmethod
    def segment_name(engine: str) -> str:
        return segment_name(engine, "control")

    @classmethod
    def create(cls, engine: str, slots: int, supervisor_pid: int) -> "ControlBlock":
        name = cls.segment_name(engine)
        size = HEADER_BYTES + slots * SLOT_BYTES
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)
        mm = mmap.mmap(shm.fd, size)
        shm.close_fd()
        cb = cls(name, shm, mm)
        cb.u64[0], cb.u64[1], cb.u64[2], cb.u64[3] = MAGIC, VERSION, slots, SLOT_BYTES
        cb.u64[4], cb.u64[5] = supervisor_pid, time.time_ns()
        cb.slots = slots
        return cb

    @classmethod
    def attach(cls, engine: str) -> "ControlBlock":
        name = cls.segment_name(engine)
        shm = posix_ipc.SharedMemory(name)  # ExistentialError if absent
        try:
            mm = mmap.mmap(shm.fd, shm.size, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            shm.close_fd()
        cb = cls(name, shm, mm)
        if cb.u64[0] != MAGIC or cb.u64[1] != VERSION or cb.u64[3] != SLOT_BYTES:
            cb.close()
            raise ValueError(f"{name}: not a syndicate control block of version {VERSION}")
        return cb

    @staticmethod
    def unlink(engine: str) -> bool:
        try:
            posix_ipc.unlink_shared_memory(ControlBlock.segment_name(engine))
            return True
        except posix_ipc.ExistentialError:
            return False

    @property
    def supervisor_pid(self) -> int:
        return self.u64[4]

    @property
    def created_ns(self) -> int:
        return self.u64[5]

    # header words 6 and 7: what the supervisor's watchdog costs (its own measurement)
    def set_watchdog_cost(self, mean_ns: int, max_ns: int) -> None:
        self.u64[6], self.u64[7] = mean_ns, max_ns

    @property
    def watchdog_cost_ns(self) -> tuple[int, int]:
        return self.u64[6], self.u64[7]

    def slot(self, index: int) -> "Slot":
        if not 0 <= index < self.slots:
            raise IndexError(f"control block has {self.slots} slots, not {index + 1}")
        return Slot(self, index)

    def close(self) -> None:
        try:
            self.u64.release()
            self.raw.release()
            self._mm.close()
        except (BufferError, ValueError):
            pass


class Slot:
    """One role's view of its page.  Methods are cheap enough for the interrupt path."""

    __slots__ = ("u", "raw", "base", "byte_base", "index")

    def __init__(self, cb: ControlBlock, index: int):
        self.index = index
        self.byte_base = HEADER_BYTES + index * SLOT_BYTES
        self.base = self.byte_base // 8
        self.u = cb.u64
        self.raw = cb.raw

    # fields --------------------------------------------------------------------------------
    def get(self, f: int) -> int:
        return self.u[self.base + f]

    def set(self, f: int, v: int) -> None:
        self.u[self.base + f] = v

    def add(self, f: int, n: int = 1) -> None:
        i = self.base + f
        self.u[i] = self.u[i] + n  # single writer per field: no lost updates

    def observe(self, h: int, ns: int) -> None:
        if ns < 0:                    # a u64 store of a negative value would raise
            ns = 0
        u, b = self.u, self.base
        u[b + _HIST_OFF + h * BUCKETS + bucket_of(ns)] += 1
        u[b + _SUM_OFF + h] += ns     # the exact sum: Prometheus's _sum

    def histogram(self, h: int) -> list[int]:
        i = self.base + _HIST_OFF + h * BUCKETS
        return list(self.u[i:i + BUCKETS])

    def reset(self, name: str) -> None:
        """Zero the whole slot (a new role, never a restart: counters survive restarts)."""
        self.raw[self.byte_base:self.byte_base + SLOT_BYTES] = bytes(SLOT_BYTES)
        self._write_str(_NAME_OFF, NAME_BYTES, name)

    # strings -------------------------------------------------------------------------------
    def _write_str(self, off: int, size: int, text: str) -> None:
        b = text.encode()[:size]
        start = self.byte_base + off * 8
        self.raw[start:start + size] = b.ljust(size, b"\0")

    def _read_str(self, off: int, size: int) -> str:
        start = self.byte_base + off * 8
        return bytes(self.raw[start:start + size]).split(b"\0", 1)[0].decode(errors="replace")

    @property
    def name(self) -> str:
        return self._read_str(_NAME_OFF, NAME_BYTES)

    def set_task(self, task: str) -> None:
        i = self.base + F.TASK_SEQ
        self.u[i] = self.u[i] + 1          # odd: writing
        self._write_str(_TASK_OFF, TASK_BYTES, task)
        self.u[i] = self.u[i] + 1          # even: stable

    @property
    def task(self) -> str:
        i = self.base + F.TASK_SEQ
        for _ in range(100):
            s1 = self.u[i]
            if s1 & 1:
                continue
            text = self._read_str(_TASK_OFF, TASK_BYTES)
            if self.u[i] == s1:
                return text
        return "?"

    # state ---------------------------------------------------------------------------------
    def set_state(self, st: State) -> None:
        self.u[self.base + F.STATE] = st

    @property
    def state(self) -> State:
        try:
            return State(self.u[self.base + F.STATE])
        except ValueError:
            return State.EMPTY

    def snapshot(self) -> "SlotView":
        u = self.u[self.base:self.base + U64_FIELDS].tolist()
        hists = {h.name.lower(): self.histogram(h) for h in H}
        return SlotView(index=self.index, name=self.name, task=self.task, fields=u, hists=hists)


@dataclass
class SlotView:
    """A copy of one slot, taken without stopping its writer."""
    index: int
    name: str
    task: str
    fields: list[int]
    hists: dict[str, list[int]]

    def __getitem__(self, f: F) -> int:
        return self.fields[f]

    @property
    def state(self) -> State:
        try:
            return State(self.fields[F.STATE])
        except ValueError:
            return State.EMPTY

    def percentile_us(self, hist: str, q: float) -> float | None:
        v = percentile_from_buckets(self.hists[hist], q)
        return None if v is None else v / 1000.0
