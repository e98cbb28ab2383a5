"""Message parsing: every malformed client message is a ProtocolError with a clear text."""

import numpy as np
import pytest

from speechlm.serve.protocol import (Kind, ProtocolError, decode_control, decode_pcm16,
                                     encode_pcm16, pack, parse, unpack, unpack_json)


def test_pcm16_round_trip_and_clipping():
    samples = np.array([0.0, 0.5, -0.5, 1.5, -2.0, np.nan], np.float32)
    decoded = decode_pcm16(encode_pcm16(samples))
    np.testing.assert_allclose(decoded, [0, 0.5, -0.5, 1, -1, 0], atol=1 / 32768)


@pytest.mark.parametrize("data, needle", [
    (b"", "empty message"),
    (b"\x07abc", "unknown message kind 0x07"),
    (b"\xff", "unknown message kind 0xff"),
    (b"\x00{}", "sent by the server only"),
    (b"\x04{}", "sent by the server only"),
    (b"\x01" + b"\x00" * 2000, "exceeds the limit of 1000"),
])
def test_parse_rejects(data, needle):
    with pytest.raises(ProtocolError, match=needle):
        parse(data, max_bytes=1000)


@pytest.mark.parametrize("payload, needle", [
    (b"", "without samples"), (b"\x01\x02\x03", "odd"),
])
def test_pcm_rejects(payload, needle):
    with pytest.raises(ProtocolError, match=needle):
        decode_pcm16(payload)


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"[1, 2]", b'{"control": "dance"}',
                                     b'{"ctrl": "reset"}', b"not json"])
def test_control_rejects(payload):
    with pytest.raises(ProtocolError, match="control message"):
        decode_control(payload)


def test_pack_unpack():
    assert decode_control(pack(Kind.CONTROL, {"control": "end_turn"})[1:]) == "end_turn"
    kind, payload = unpack(pack(Kind.METADATA, {"state": "listening"}))
    assert kind == Kind.METADATA and unpack_json(payload) == {"state": "listening"}
    assert parse(pack(Kind.AUDIO, b"\x00\x00"), 10).payload == b"\x00\x00"
