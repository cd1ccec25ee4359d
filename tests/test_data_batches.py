"""BatchIterator: epochs are permutations, the order is seeded, and its state resumes exactly."""

from __future__ import annotations

import pytest
import torch

from bnlab.data import BatchIterator
from bnlab.errors import BnlabError


def _data(n: int = 10):
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2)  # row i holds i
    return x, torch.arange(n)


def test_each_epoch_is_a_permutation_without_the_remainder() -> None:
    x, y = _data(10)
    it = BatchIterator(x, y, 3, torch.Generator().manual_seed(0))
    epochs = []
    for _ in range(4):
        seen = torch.cat([next(it)[1] for _ in range(3)])  # 3 full batches per epoch, remainder 1 dropped
        assert len(set(seen.tolist())) == 9
        epochs.append(seen.tolist())
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled every epoch
    xb, yb = next(it)
    assert xb.shape == (3, 2) and torch.equal(xb[:, 0].long(), yb)  # inputs stay aligned with labels


def test_same_seed_same_order_other_seed_other_order() -> None:
    x, y = _data(50)

    def order(seed: int) -> list[int]:
        it = BatchIterator(x, y, 5, torch.Generator().manual_seed(seed))
        return torch.cat([next(it)[1] for _ in range(25)]).tolist()

    assert order(1) == order(1) and order(1) != order(2)


def test_state_dict_resumes_mid_epoch() -> None:
    x, y = _data(20)
    ref = BatchIterator(x, y, 3, torch.Generator().manual_seed(7))
    expected = [next(ref)[1].tolist() for _ in range(20)]
    it = BatchIterator(x, y, 3, torch.Generator().manual_seed(7))
    got = [next(it)[1].tolist() for _ in range(8)]
    state = it.state_dict()
    fresh = BatchIterator(x, y, 3, torch.Generator().manual_seed(999))
    fresh.load_state_dict(state)
    got += [next(fresh)[1].tolist() for _ in range(12)]
    assert got == expected


def test_bad_batch_sizes() -> None:
    x, y = _data(4)
    for bad in (0, -1, 1.5):
        with pytest.raises(BnlabError, match="batch_size"):
            BatchIterator(x, y, bad)
    with pytest.raises(BnlabError, match="larger than the data set"):
        BatchIterator(x, y, 5)
