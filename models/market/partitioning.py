"""Which partition of a topic a symbol lives on: Kafka's own rule for a record keyed by it.

One symbol's bars must be built in one place. Ingest keeps per-symbol state per partition
(models/market/ingest.py says why it is keyed by partition), so a symbol whose records land on two
partitions would get two bar builders that both emit the same minute, and the store keeps only
one of them. The rule that prevents it is the one Kafka clients already apply to a keyed record:
`home_partition(key, n) = (murmur2(key) & 0x7fffffff) % n`, the Java client's default
partitioner for a record with a key (and librdkafka's `murmur2` / `murmur2_random`). So any
producer that keys market records by their symbol with that partitioner agrees with us; the
project's producers choose the partition explicitly with this function
(`connectors.kafka.io.publish`), and ingest dead-letters a symbol that arrives elsewhere.

Pure and stable: the result depends only on the key's bytes and the partition count.
"""

from __future__ import annotations

__all__ = ["home_partition", "murmur2"]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as unsigned."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def home_partition(key: bytes, partitions: int) -> int:
    """The partition a record keyed `key` belongs to, of `partitions` (>= 1)."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
