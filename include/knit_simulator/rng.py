"""A tiny seeded generator (splitmix64) and the id formats Knit uses.

``random.Random`` costs ~8 µs to seed; the simulator derives one generator per application
(so any application can be rendered on its own, in any order, for a million of them), and
splitmix64 seeds for free. Same inputs, same numbers, on every platform and Python version.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def mix(value: int) -> int:
    """Scramble a 64-bit integer (splitmix64's finalizer)."""
    z = (value + _GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of the parts that, unlike ``hash()``, is the same in every process."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


class Rng:
    """Deterministic stream of numbers from one 64-bit seed.

    Each 64-bit draw is spent on several small numbers (a pool divided down), because a
    generated application needs ~40 numbers and one splitmix64 step costs about a microsecond.
    """

    __slots__ = ("_pool", "_state")

    def __init__(self, seed: int) -> None:
        self._state = seed & _M64
        self._pool = 0

    def next(self) -> int:
        # mix() inlined, constants as literals: a run draws millions of numbers.
        z = self._state = (self._state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = (z + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """An integer in [0, n) (bias under 2**-16)."""
        pool = self._pool
        if pool < n << 16:
            pool = self.next()
        self._pool, rem = divmod(pool, n)
        return rem

    def many(self, *sizes: int) -> list[int]:
        """One integer in [0, n) for each n, in order; one call instead of several in hot paths."""
        out = []
        pool = self._pool
        for n in sizes:
            if pool < n << 16:  # next(), inlined
                z = self._state = (self._state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
                z = (z + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
                z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
                z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
                pool = z ^ (z >> 31)
            pool, rem = divmod(pool, n)
            out.append(rem)
        self._pool = pool
        return out

    def between(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return low + self.below(high - low + 1)

    def chance(self, p: float) -> bool:
        return self.below(65536) < p * 65536

    def pick(self, items: Sequence[T]) -> T:
        return items[self.below(len(items))]


def base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def random_id(prefix: str) -> str:
    """A fresh id such as ``sj_…`` or ``sr_…`` (22 base62 characters, like Knit's)."""
    return prefix + base62(int.from_bytes(os.urandom(17), "big"), 22)


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 2-character base62 tail, by value


class EventIds:
    """Event ids of one run (or, with prefix ``ex_``, execution ids of one sender): a random
    12-character stem plus a counter, unique across restarts.

    The counter's first 8 base62 digits change once every 3,844 ids; they are cached, and the
    last two come from a table (a run makes an id per event).
    """

    __slots__ = ("_head", "_high", "_next", "_stem")

    def __init__(self, prefix: str = "ev_") -> None:
        self._stem = prefix + base62(int.from_bytes(os.urandom(10), "big"), 12)
        self._next = 0
        self._high = -1
        self._head = ""

    def new(self) -> str:
        self._next += 1
        high, low = divmod(self._next, 3844)
        if high != self._high:
            self._high = high
            self._head = self._stem + base62(high, 8)
        return self._head + _PAIRS[low]
