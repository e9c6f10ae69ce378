"""A Write chunk serialised by quire.chunks (a station uploading, an archive pushing to its copy) must be the
very bytes protobuf would send."""

import google_crc32c
import pytest

from quire.chunks import write_request
from quire.v1 import sync_pb2

# Lengths either side of each varint width (1, 2, 3 and 4 bytes), an empty chunk, and the limit.
LENGTHS = [0, 1, 127, 128, 300, 16383, 16384, 1 << 20, (1 << 21) - 1, 1 << 21, 4 << 20]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("head", [
    {"write_offset": 0},
    {"write_offset": 3 << 20, "sha256": "ab" * 32},
    {"write_offset": 0, "sha256": "cd" * 32, "station_id": "st-7", "bundle_id": "ef" * 32},
])
def test_chunk_bytes_are_protobufs_own(length, last, head):
    data = bytes(i * 7 % 251 for i in range(min(length, 4096))) * (length // 4096) + b"\x5a" * (length % 4096)
    ours = write_request(sync_pb2.WriteRequest(**head), data, last)
    whole = sync_pb2.WriteRequest(**head, data=data, finish_write=last, data_crc32c=google_crc32c.value(data))
    assert ours == whole.SerializeToString()
    back = sync_pb2.WriteRequest.FromString(ours)
    assert back.data == data and back.finish_write == last and back.HasField("data_crc32c")
