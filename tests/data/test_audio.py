import io

import numpy as np
import pytest
import soundfile as sf

from speechlm.core.errors import AudioError
from speechlm.data.audio import SAMPLE_RATE, encode_flac, read_audio
from tests.conftest import tone


def test_flac_round_trip_is_lossless_to_16_bit():
    samples = tone(0.5)
    decoded = read_audio(encode_flac(samples))
    assert decoded.dtype == np.float32 and decoded.shape == samples.shape
    assert np.max(np.abs(decoded - samples)) < 1e-4


def test_stereo_44k_becomes_mono_16k(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, tone(1.0, rate=44_100, channels=2), 44_100)
    samples = read_audio(path)
    assert samples.ndim == 1
    assert abs(samples.size - SAMPLE_RATE) <= 2


@pytest.mark.parametrize("content, reason", [
    (b"RIFF\x00\x00garbage" * 10, "cannot decode"),
    (None, "empty"),
    ("nan", "NaN or Inf"),
])
def test_bad_audio_names_file_and_problem(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    if content is None:
        sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    elif content == "nan":
        data = tone(0.2)
        data[10] = np.nan
        sf.write(path, data, SAMPLE_RATE, subtype="FLOAT")
    else:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=reason) as err:
        read_audio(path)
    assert str(path) in str(err.value)


def test_missing_file_and_too_long(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        read_audio(tmp_path / "nope.wav")
    buffer = io.BytesIO()
    sf.write(buffer, tone(2.0), SAMPLE_RATE, format="WAV")
    with pytest.raises(AudioError, match="longer than --max-seconds 1"):
        read_audio(buffer.getvalue(), max_seconds=1.0)
