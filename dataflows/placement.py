"""Which process runs which part of the flow when it runs as a cluster of processes.

Bytewax (0.21.1) sends every key of a stateful step to worker
`siphash13(key bytes + b"\\xff") % workers` (Rust's `DefaultHasher`, keys 0, over the key
`String`; src/operators.rs `stateful_batch` -> src/timely.rs `partition`). So a key's worker is
known before the run, and a key can be chosen for a worker: `pinned` appends the first `@i`
that lands there. With one worker every key stays what it is, so a one-process run's steps,
rows and recovery state are exactly as before.

The layout, one Bytewax worker per process (`Placement`):
- process 0 (the one that was started: the command line's process) holds the desk (one key:
  the portfolio's decisions are one sequence), the store (embedded chdb can be opened by one
  process only, so every row is written there) and the notifier, and with them the GPT and order
  gateways the desk drives;
- processes 1..N-1 read the input partitions and run ingest (parse, bars, features, triggers),
  each partition where its ingest key lands, so a Kafka batch never crosses processes; what
  crosses is ingest's output (the desk's bar blocks, and the bars' rows for the store).
With a ClickHouse server every process writes its own rows (`shared_store`): nothing crosses
for the store. The Kafka output messages leave from the process that writes the row.

`rows_apart` (a backtest: a bounded run whose process 0 does not hold the store itself) moves
the store out of the desk's process, which is the cluster's critical path: embedded chdb (its
opening, its inserts) lives in process 1, an ingest process. Every process gathers and
converts the rows it makes (`gather_process`: ingest's rows never cross, nor ride with the
desk's inputs), and only the INSERTs they make (Arrow tables, JSONEachRow text:
`connectors.store.clickhouse.PreparedInsert`) cross to the store. The desk's records stay in
process 0: they are converted there as before (a decision's JSON parts, shared with its Kafka
message, which leaves from there too), since pickling them for another process cost as much
as converting them (measured: decisions 19 µs a record to pack, 26 to unpack). A live run
keeps the store in process 0, which holds it open for the run's summary and the control API
(`stratflow run --api` reads the decision log there).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

_M = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M


def siphash13(data: bytes) -> int:
    """SipHash-1-3 with both keys 0: what Rust's `DefaultHasher::default()` computes."""
    v0, v1 = 0x736F6D6570736575, 0x646F72616E646F6D
    v2, v3 = 0x6C7967656E657261, 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _M
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _M
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _M
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _M
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        rounds(1)
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= last
    rounds(1)
    v0 ^= last
    v2 ^= 0xFF
    rounds(3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """The worker Bytewax gives a stateful step's `key` among `workers`."""
    # Rust's `impl Hash for str` writes the bytes, then 0xff.
    return siphash13(key.encode() + b"\xff") % workers


@functools.lru_cache(maxsize=1024)
def pinned(key: str, worker: int, workers: int) -> str:
    """`key` itself when it lands on `worker`, else `key@i` for the first `i` that does."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} is not one of {workers}")
    candidate, i = key, 0
    while worker_of(candidate, workers) != worker:
        i += 1
        candidate = f"{key}@{i}"
    return candidate


STORE_PART = "store-{:03d}"
"""The store sink's partition of a process (`Placement.store_parts`)."""


@dataclass(frozen=True)
class Placement:
    """Where the flow's keys and partitions live, seen from `process` of `processes` (one
    Bytewax worker each, so a process's index is its worker's). `shared_store`: the store is a
    server every process can write to (else only process 0 opens it)."""

    processes: int = 1
    process: int = 0
    shared_store: bool = False
    rows_apart: bool = False
    """The desk's rows are written (store and Kafka) in process 1, not the desk's (see the
    module docstring); with one process there is nowhere else."""

    def __post_init__(self) -> None:
        if self.processes < 1 or not 0 <= self.process < self.processes:
            raise ValueError(f"process {self.process} of {self.processes} does not exist")

    @property
    def desk_process(self) -> int:
        return 0

    def desk_key(self, key: str) -> str:
        return pinned(key, self.desk_process, self.processes)

    def ingest_process(self, part: str, parts: list[str]) -> int:
        """The process that reads and ingests input partition `part` of all the `parts`:
        process 0 alone, else round robin over processes 1.. in the parts' sorted order."""
        if self.processes == 1:
            return 0
        others = [p for p in range(self.processes) if p != self.desk_process]
        return others[sorted(parts).index(part) % len(others)]

    def ingest_keys(self, parts: list[str]) -> dict[str, str]:
        """Each input partition's ingest key (the partition key, pinned to its process)."""
        return {p: pinned(p, self.ingest_process(p, parts), self.processes) for p in parts}

    def local_parts(self, parts: list[str]) -> list[str]:
        """The input partitions this process reads (the ones it ingests)."""
        return [p for p in parts if self.ingest_process(p, parts) == self.process]

    def table_key(self, table: str) -> str:
        """The key one table's rows are gathered under here, before the store: in the process
        that writes them (`store_process`), or with `rows_apart` here, where they are made
        (`gather_process`)."""
        return pinned(table, self.gather_process, self.processes)

    @property
    def gather_process(self) -> int:
        """Where the rows made here are gathered in batches: with `rows_apart` or a server,
        here (with `rows_apart` each batch is converted here too, and only the INSERT it
        makes crosses), else where they are written."""
        if self.shared_store or (self.rows_apart and self.processes > 1):
            return self.process
        return self.store_process

    @property
    def rows_process(self) -> int:
        """The process that writes the desk's rows: process 1 with `rows_apart`, else the
        desk's."""
        return 1 if self.rows_apart and self.processes > 1 else self.desk_process

    @property
    def together(self) -> bool:
        """Whether every row is written in the desk's process while ingest runs elsewhere:
        then ingest's rows ride with the desk's inputs (`dataflows.adapters.IngestLanes`)."""
        return (
            self.processes > 1 and not self.shared_store and self.rows_process == self.desk_process
        )

    @property
    def store_process(self) -> int:
        """The process that writes the rows made here: with a server, this one (the desk's
        rows: `rows_process`); embedded, the one that holds the store (`rows_process`)."""
        if self.shared_store and self.process != self.desk_process:
            return self.process
        return self.rows_process

    @property
    def store_processes(self) -> list[int]:
        """The processes that hold a store partition, in order: with a server every process
        that writes rows, embedded the one (so no other process opens the store)."""
        if self.shared_store:
            return [p for p in range(self.processes) if p != 0 or self.rows_process == 0]
        return [self.rows_process]

    def store_parts(self) -> list[str]:
        """The store sink's partitions this process holds (`store_processes`)."""
        return [STORE_PART.format(self.process)] if self.process in self.store_processes else []

    def store_part_of(self, key: str) -> int:
        """The store partition (index among all, sorted) of a gathered table's key: the one of
        the process that writes what was gathered in the key's process."""
        gathered = worker_of(key, self.processes)
        if self.shared_store and gathered != self.desk_process:
            return self.store_processes.index(gathered)
        return self.store_processes.index(self.rows_process)

    @property
    def notifier_here(self) -> bool:
        """The notifier lives in process 0: alerts from elsewhere travel there."""
        return self.process == 0
