"""Rows served with their indices (clara_model/training/dataset.py)."""

import pickle

from clara_model.training.dataset import CollateWithIndices, IndexedRows


class RecordingCollator:
    def __call__(self, rows, keys=None):
        return list(zip(rows, keys))


def test_each_sample_is_keyed_by_epoch_and_row_index():
    dataset = IndexedRows(["a", "b", "c"])
    collate = CollateWithIndices(RecordingCollator(), epoch=3)
    indices, batch = collate([dataset[2], dataset[0]])
    assert indices == [2, 0]
    assert batch == [("c", (3, 2)), ("a", (3, 0))]
    assert pickle.loads(pickle.dumps(collate))([dataset[1]]) == ([1], [("b", (3, 1))])  # DataLoader workers
