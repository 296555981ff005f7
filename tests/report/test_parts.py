"""The evaluation's saved parts: a batch record survives the disk exactly, parts of another
evaluation are recomputed with a message naming what differs, and a damaged part is not reused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hagxai.report.parts import BatchRecord, PartStore, decode, encode, module_digest

ROWS = ["learned", "gradcam", "human"]
COLUMNS = ["cc", "nss", "deletion_black"]
FIELDS = {"model": {"digest": "abc"}, "images": {"count": 3}, "evaluate": {"batch_size": 3}}


def _record(number: int = 0, ids=("a", "b", "c")) -> BatchRecord:
    generator = np.random.default_rng(number)
    record = BatchRecord(number, list(ids))
    for k, row in enumerate(ROWS):
        values = torch.rand(len(ids), len(COLUMNS), generator=torch.Generator().manual_seed(k))
        record.values[row] = {c: values[:, j].tolist() for j, c in enumerate(COLUMNS)}
        record.values[row]["nss"][0] = math.nan  # undefined values survive as NaN
        record.curves[row] = {
            "deletion_black": generator.random((len(ids), 5)).astype(np.float32),
            "insertion_blur": generator.random((len(ids), 5)).astype(np.float32),
        }
        record.thumbs[row] = {
            i: generator.random((4 + j, 6)).astype(np.float16) for j, i in enumerate(ids)
        }
    return record


def _equal(a: BatchRecord, b: BatchRecord) -> None:
    assert (a.number, a.ids) == (b.number, b.ids)
    for row in ROWS:
        for column in COLUMNS:
            np.testing.assert_array_equal(a.values[row][column], b.values[row][column])
        assert a.curves[row].keys() == b.curves[row].keys()
        for column in a.curves[row]:
            assert a.curves[row][column].dtype == b.curves[row][column].dtype
            np.testing.assert_array_equal(a.curves[row][column], b.curves[row][column])
        assert a.thumbs[row].keys() == b.thumbs[row].keys()
        for sample_id in a.thumbs[row]:
            assert b.thumbs[row][sample_id].dtype == np.float16
            np.testing.assert_array_equal(a.thumbs[row][sample_id], b.thumbs[row][sample_id])


def test_a_record_round_trips_exactly_and_its_bytes_repeat():
    record = _record()
    data = encode(record, "k", ROWS, COLUMNS)
    assert encode(_record(), "k", ROWS, COLUMNS) == data
    _equal(record, decode(data, "k", ROWS, COLUMNS))
    with pytest.raises(ValueError, match="another evaluation"):
        decode(data, "other", ROWS, COLUMNS)
    with pytest.raises(ValueError, match="other rows"):
        decode(data, "k", ROWS[:2], COLUMNS)
    with pytest.raises(ValueError, match="not a safetensors"):
        decode(data[: len(data) // 2], "k", ROWS, COLUMNS)


def test_the_store_resumes_its_own_parts_only(tmp_path):
    folder = tmp_path / "parts"
    store = PartStore(folder, FIELDS, ROWS, COLUMNS)
    assert store.message == ""
    batches = [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    for n in (0, 2):
        store.write(n, encode(_record(n, batches[n]), store.key, ROWS, COLUMNS))
    again = PartStore(folder, FIELDS, ROWS, COLUMNS)
    assert again.message == ""
    done = again.done(batches)
    assert sorted(done) == [0, 2]
    _equal(done[2], _record(2, batches[2]))
    # a part of other images (the image list changed) or a damaged file is not reused
    assert sorted(again.done([["a", "b", "x"], *batches[1:]])) == [2]
    again.path(2).write_bytes(again.path(2).read_bytes()[:100])
    assert sorted(again.done(batches)) == [0]
    # another evaluation: the parts go, and the message names what differs
    (folder / "notes.txt").write_text("the user's")
    changed = {**FIELDS, "evaluate": {"batch_size": 4}}
    other = PartStore(folder, changed, ROWS, COLUMNS)
    assert "another evaluation (evaluate differ); recomputing" in other.message
    assert other.done(batches) == {}
    assert not other.path(0).exists()
    assert (folder / "notes.txt").read_text() == "the user's", "only its own files go"
    forced = PartStore(folder, changed, ROWS, COLUMNS)
    forced.write(0, encode(_record(0, batches[0]), forced.key, ROWS, COLUMNS))
    forced = PartStore(folder, changed, ROWS, COLUMNS, fresh=True)
    assert "--force" in forced.message and forced.done(batches) == {}


def test_randomisation_is_kept_with_nan_and_its_key(tmp_path):
    store = PartStore(tmp_path / "parts", FIELDS, ROWS, COLUMNS)
    result = {"steps": [["fc"]], "spearman": {"gradcam": [math.nan, 0.5]}, "images": 2}
    store.write_randomisation("r1", result)
    read = store.read_randomisation("r1")
    assert math.isnan(read["spearman"]["gradcam"][0]) and read["spearman"]["gradcam"][1] == 0.5
    assert read["steps"] == [["fc"]] and read["images"] == 2
    assert store.read_randomisation("r2") is None


def test_module_digest_sees_every_parameter():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    a.register_buffer("scalar", torch.tensor(1.0))
    b.register_buffer("scalar", torch.tensor(1.0))
    b.load_state_dict(a.state_dict())
    assert module_digest(a) == module_digest(b)
    with torch.no_grad():
        b.bias[1] += 1e-7
    assert module_digest(a) != module_digest(b)
    assert module_digest(a, {"mode": 1}) != module_digest(a, {"mode": 2})
