"""The audit log's tree and checkpoints: RFC 6962 hashes and proofs, signed heads, witness checks."""

import random

import nacl.signing
import pytest

from quire import checkpoint, keys, merkle, receipt
from quire.canonical import canonical_bytes
from quire.checkpoint import HistoryRewritten
from quire.errors import BadSignature, Malformed, UnknownFormat

# The Certificate Transparency reference tree (RFC 6962 test data): eight leaf inputs, the tree
# head of every prefix, and proofs published with them. Agreeing with it means any RFC 6962
# implementation can check Quire's log.
CT_INPUTS = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [  # (leaf index, tree size, proof)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


@pytest.fixture(scope="module")
def ct_tree():
    return merkle.MemoryTree([merkle.leaf_hash(x) for x in CT_INPUTS])


def test_tree_heads_match_the_rfc_6962_reference(ct_tree):
    assert [ct_tree.root(n).hex() for n in range(9)] == CT_ROOTS


def test_proofs_match_the_rfc_6962_reference_and_verify(ct_tree):
    for index, size, proof in CT_INCLUSION:
        assert [p.hex() for p in ct_tree.inclusion_proof(index, size)] == proof
        assert merkle.verify_inclusion(ct_tree.perfect(0, index), index, size,
                                       [bytes.fromhex(p) for p in proof], bytes.fromhex(CT_ROOTS[size]))
    for old, new, proof in CT_CONSISTENCY:
        assert [p.hex() for p in ct_tree.consistency_proof(old, new)] == proof
        assert merkle.verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new]),
                                         [bytes.fromhex(p) for p in proof])


def test_leaves_and_nodes_are_domain_separated():
    a, b = merkle.leaf_hash(b"x"), merkle.leaf_hash(b"y")
    # An interior node's preimage presented as a leaf does not hash to the node.
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)


def _tree(n, seed=0):
    rng = random.Random(seed)
    return merkle.MemoryTree([merkle.leaf_hash(rng.randbytes(rng.randrange(1, 9))) for _ in range(n)])


def test_every_inclusion_proof_verifies_and_nothing_else_does():
    for n in range(1, 34):
        tree = _tree(n, n)
        root = tree.root()
        for i in range(n):
            proof, leaf = tree.inclusion_proof(i), tree.perfect(0, i)
            assert merkle.verify_inclusion(leaf, i, n, proof, root)
            assert not merkle.verify_inclusion(merkle.leaf_hash(b"forged"), i, n, proof, root)
            if n > 1:
                assert not merkle.verify_inclusion(leaf, (i + 1) % n, n, proof, root)
                damaged = list(proof)
                damaged[0] = bytes(32)
                assert not merkle.verify_inclusion(leaf, i, n, damaged, root)


def test_every_consistency_proof_verifies_and_a_rewritten_prefix_never_does():
    for n in range(1, 30):
        tree = _tree(n, n)
        for m in range(0, n + 1):
            proof = tree.consistency_proof(m)
            assert merkle.verify_consistency(m, n, tree.root(m), tree.root(), proof), (m, n)
            if 0 < m < n:
                # The same entries with one of the first m rewritten: the new log does not extend the old.
                rewritten = [tree.perfect(0, i) for i in range(n)]
                rewritten[m - 1] = merkle.leaf_hash(b"rewritten")
                other = merkle.MemoryTree(rewritten)
                assert not merkle.verify_consistency(m, n, tree.root(m), other.root(), other.consistency_proof(m))
                assert not merkle.verify_consistency(m, n, tree.root(m), tree.root(), proof[1:])


def test_nodes_completed_by_an_append_are_the_ones_a_tree_stores():
    tree = merkle.MemoryTree()
    for i in range(9):
        nodes = tree.append(merkle.leaf_hash(bytes([i])))
        # Appending leaf 7 completes the subtrees of 2, 4 and 8 leaves ending there.
        assert [(lvl, idx) for lvl, idx, _ in nodes] == {
            7: [(0, 7), (1, 3), (2, 1), (3, 0)]}.get(i, [(0, i)] + ([(1, i // 2)] if i % 2 else [])
                                                      + ([(2, i // 4)] if i % 4 == 3 else []))


# ---- checkpoints --------------------------------------------------------------------------------

KEY = nacl.signing.SigningKey.generate()
PUB = bytes(KEY.verify_key)


def _cp(tree, size=None):
    size = tree.size if size is None else size
    return checkpoint.sign(KEY, size, tree.root(size), "2026-11-21T00:00:00.000Z")


def test_checkpoint_round_trips_and_verifies_under_its_key_only():
    cp = _cp(_tree(5))
    again = checkpoint.from_json(cp.to_json())
    checkpoint.verify(again, PUB)
    assert again.tree_size == 5 and again.body["log"] == keys.fingerprint(PUB)
    with pytest.raises(BadSignature):
        checkpoint.verify(again, bytes(nacl.signing.SigningKey.generate().verify_key))
    forged = checkpoint.Checkpoint(dict(again.body, tree_size=6), again.signature)
    with pytest.raises(BadSignature):
        checkpoint.verify(forged, PUB)


def test_a_receipt_signature_is_not_a_checkpoint_signature():
    cp = _cp(_tree(3))
    as_receipt = checkpoint.Checkpoint(cp.body, keys.sign(KEY, keys.RECEIPT_CONTEXT, canonical_bytes(cp.body)))
    with pytest.raises(BadSignature):
        checkpoint.verify(as_receipt, PUB)


def test_checkpoint_format_is_versioned_and_every_problem_named():
    with pytest.raises(UnknownFormat, match="quire.checkpoint/9"):
        checkpoint.from_json({"body": {"format": "quire.checkpoint/9"}, "signature": "00"})
    with pytest.raises(Malformed) as info:
        checkpoint.from_json({"body": {"format": checkpoint.FORMAT, "tree_size": -1, "root_hash": "xy"},
                              "signature": "zz"})
    assert len(info.value.problems) == 5  # size, root, log, signed_at, signature


def test_a_witness_accepts_a_log_that_grew_and_refuses_a_rewritten_one():
    tree = _tree(20)
    held, newer = _cp(tree, 7), _cp(tree)
    checkpoint.check_consistent(held, newer, tree.consistency_proof(7), PUB)

    leaves = [tree.perfect(0, i) for i in range(20)]
    leaves[3] = merkle.leaf_hash(b"entry 3, rewritten")
    rewritten = merkle.MemoryTree(leaves)
    with pytest.raises(HistoryRewritten, match="history was rewritten"):
        checkpoint.check_consistent(held, _cp(rewritten), rewritten.consistency_proof(7), PUB)
    with pytest.raises(HistoryRewritten, match="entries were removed"):
        checkpoint.check_consistent(newer, held, [], PUB)


def _receipt(tree, entry, previous=None):
    cp = _cp(tree)
    audit = {"entry": entry, "checkpoint": cp.to_json()}
    if previous is not None:
        audit["consistency"] = {"from_size": previous, "proof": [p.hex() for p in tree.consistency_proof(previous)]}
    data, sig = receipt.issue({"bundle_id": "b" * 64, "station_id": "st-1", "pages": 1, "bytes": 1,
                               "received_at": "t", "central_key": keys.fingerprint(PUB), "audit": audit,
                               "standards": {"profile": "gbt33870", "version": 1, "warnings": []}}, KEY)
    return receipt.verify(data, sig, PUB, "b" * 64)


def test_receipts_carry_checkpoints_a_station_can_chain():
    tree = _tree(12)
    first = _receipt(merkle.MemoryTree([tree.perfect(0, i) for i in range(5)]), 4)
    second = _receipt(tree, 11, previous=5)
    assert receipt.checkpoint_of(second).tree_size == 12
    receipt.check_history(first, second, PUB)
    other = _receipt(_tree(12, seed=99), 11, previous=5)
    with pytest.raises(HistoryRewritten):
        receipt.check_history(first, other, PUB)
    with pytest.raises(Malformed, match="no consistency proof from the held log size 5"):
        receipt.check_history(first, _receipt(tree, 11), PUB)


def test_a_receipt_with_a_forged_checkpoint_does_not_verify():
    tree = _tree(4)
    cp = _cp(tree)
    body = dict(cp.body, tree_size=40)
    data, sig = receipt.issue({"bundle_id": "b" * 64, "station_id": "st-1", "pages": 1, "bytes": 1,
                               "received_at": "t", "central_key": "k",
                               "standards": {"profile": "gbt33870", "version": 1, "warnings": []},
                               "audit": {"entry": 3, "checkpoint": {"body": body, "signature": cp.signature.hex()}}},
                              KEY)
    with pytest.raises(Malformed, match="receipt.audit.checkpoint"):
        receipt.verify(data, sig, PUB, "b" * 64)


def test_version_1_receipts_still_verify():
    body = {"format": "quire.receipt/1", "bundle_id": "b" * 64, "station_id": "st-1", "pages": 1, "bytes": 1,
            "received_at": "t", "central_key": "k"}
    data = canonical_bytes(body)
    assert receipt.verify(data, keys.sign(KEY, keys.RECEIPT_CONTEXT, data), PUB, "b" * 64) == body
    assert receipt.checkpoint_of(body) is None
