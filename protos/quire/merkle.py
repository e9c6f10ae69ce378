"""RFC 6962 Merkle trees: leaf and node hashes, tree heads, inclusion and consistency proofs.

A tree is read through one function, ``perfect(level, index)``: the hash of the complete subtree
of 2**level leaves that starts at leaf ``index * 2**level``. The central service answers it from
SQLite, verifiers and tests from memory (``MemoryTree``); the proofs are the same either way, and
each costs O(log² n) lookups, never a pass over the whole log.
"""

import hashlib
from typing import Callable, Sequence

Perfect = Callable[[int, int], bytes]

# RFC 6962 §2.1: the hash of an empty tree is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): a leaf can never be mistaken for an interior node."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def subtree_hash(perfect: Perfect, start: int, end: int) -> bytes:
    """MTH of leaves [start, end), built from the complete subtrees that tile it."""
    n = end - start
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        return perfect(n.bit_length() - 1, start // n)
    k = _split(n)
    return node_hash(subtree_hash(perfect, start, start + k), subtree_hash(perfect, start + k, end))


def root_hash(perfect: Perfect, size: int) -> bytes:
    """The tree head of the first ``size`` leaves."""
    return subtree_hash(perfect, 0, size)


def inclusion_proof(perfect: Perfect, index: int, size: int) -> list[bytes]:
    """RFC 6962 PATH(index, D[0:size]), ordered from the leaf upwards."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    siblings = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            siblings.append(subtree_hash(perfect, start + k, end))
            end = start + k
        else:
            siblings.append(subtree_hash(perfect, start, start + k))
            start += k
    return siblings[::-1]


def consistency_proof(perfect: Perfect, old_size: int, new_size: int) -> list[bytes]:
    """RFC 6962 PROOF(old_size, D[0:new_size]): the tree of ``old_size`` is a prefix of the new one."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} leaves to {new_size}")
    if old_size in (0, new_size):
        return []
    nodes = []
    start, end, m, whole_old_tree = 0, new_size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            nodes.append(subtree_hash(perfect, start + k, end))
            end = start + k
        else:
            nodes.append(subtree_hash(perfect, start, start + k))
            start, m, whole_old_tree = start + k, m - k, False
    if not whole_old_tree:
        nodes.append(subtree_hash(perfect, start, end))
    return nodes[::-1]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True when ``proof`` shows ``leaf`` at ``index`` in the tree of ``size`` leaves with ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """True when ``proof`` shows the tree (old_size, old_root) is a prefix of (new_size, new_root)."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # a complete old tree is itself a node of the new one
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def completed_nodes(perfect: Perfect, index: int, leaf: bytes) -> list[tuple[int, int, bytes]]:
    """(level, index, hash) of the leaf appended at ``index`` and of every subtree it completes."""
    nodes = [(0, index, leaf)]
    level, h = 0, leaf
    while index & 1:
        h = node_hash(perfect(level, index - 1), h)
        level, index = level + 1, index >> 1
        nodes.append((level, index, h))
    return nodes


class MemoryTree:
    """A Merkle tree held in memory: for verifiers that recompute a log, and for tests."""

    def __init__(self, leaves: Sequence[bytes] = ()):
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the nodes it completes, as ``completed_nodes`` does."""
        nodes = completed_nodes(self.perfect, self.size, leaf)
        for level, _, h in nodes:
            if level == len(self._levels):
                self._levels.append([])
            self._levels[level].append(h)
        return nodes

    def perfect(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return root_hash(self.perfect, self.size if size is None else self._bounded(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(self.perfect, index, self.size if size is None else self._bounded(size))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(self.perfect, old_size, self.size if new_size is None else self._bounded(new_size))

    def _bounded(self, size: int) -> int:
        if not 0 <= size <= self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")
        return size


def _split(n: int) -> int:
    """The largest power of two below ``n`` (n >= 2): where RFC 6962 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)
