"""``hagxai cache verify DIR``: every shard's checksum, exit 1 naming the bad ones."""

from __future__ import annotations

from hagxai.cache import EvidenceCache
from hagxai.cli import main

LAYERS = ["layer4"]


def test_cache_verify_names_bad_shards(classifier, samples, tmp_path, capsys):
    cache = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path / "evidence", shard_size=4, progress=False
    )
    assert main(["cache", "verify", str(tmp_path / "evidence")]) == 0
    assert f"ok  {cache.path}" in capsys.readouterr().out
    shard = cache.path / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["cache", "verify", str(cache.path)]) == 1
    out = capsys.readouterr().out
    assert f"BAD {shard}: SHA-256 differs from the index" in out
    assert "shard-00001" not in out
    assert main(["cache", "verify", str(tmp_path / "nothing")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["cache", "verify", str(tmp_path / "empty")]) == 1
    assert "holds no evidence cache" in capsys.readouterr().err
