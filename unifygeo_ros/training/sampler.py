"""Batches without false negatives, with geographic hard negatives.

L_G and L_R treat every other pair of the mini-batch as a negative. That is false when
sample B's positive tile contains A's camera (it is one of A's semi-positives), so such
pairs never share a batch: A and B *conflict* when B's positive is among A's tiles or
A's positive among B's.

After the first epoch a share of the batches (``hard_fraction``) is grown around a random
seed sample from its nearest neighbours on the ground, as Sample4Geo does with GPS: the
other tiles of such a batch look like the right one, which is what retrieval and
re-ranking must learn to tell apart.
"""

from __future__ import annotations

import numpy as np


class ConflictFreeBatchSampler:
    def __init__(self, positives: np.ndarray, tiles: list[set], positions: np.ndarray, batch_size: int,
                 hard_fraction: float = 0.5, seed: int = 0, neighbours: int = 64):
        """``positives[i]``: sample i's positive tile id; ``tiles[i]``: ids of every tile that
        contains sample i's camera (positive and semi-positives); ``positions``: (N, 2) metres
        (samples of different areas must lie far apart)."""
        n = len(positives)
        if batch_size < 1:
            raise ValueError(f"batch size: expected >= 1, got {batch_size}")
        if n < batch_size:
            raise ValueError(f"training needs at least one full batch: {n} samples < batch size {batch_size}")
        self.positives = np.asarray(positives)
        self.tiles = tiles
        self.batch_size = batch_size
        self.hard_fraction = hard_fraction
        self.seed = seed
        self.epoch = 0
        self.positions = np.asarray(positions, dtype=np.float64)
        self.neighbours = min(neighbours, n)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.positives) // self.batch_size

    def _nearest(self, i: int, k: int) -> np.ndarray:
        """The ``k`` samples nearest to sample ``i`` (itself first), nearest first."""
        d = np.sum((self.positions - self.positions[i]) ** 2, axis=1)
        k = min(k, len(d))
        near = np.argpartition(d, k - 1)[:k]
        return near[np.argsort(d[near], kind="stable")]

    def _conflicts(self, i: int, batch_pos: set, batch_tiles: set) -> bool:
        return self.positives[i] in batch_tiles or bool(self.tiles[i] & batch_pos)

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        order = list(rng.permutation(len(self.positives)))
        used = np.zeros(len(self.positives), dtype=bool)
        hard = self.epoch > 0 and self.hard_fraction > 0
        for _ in range(len(self)):
            batch, batch_pos, batch_tiles = [], set(), set()

            def add(i: int) -> None:
                batch.append(i)
                used[i] = True
                batch_pos.add(self.positives[i])
                batch_tiles.update(self.tiles[i])

            while order and used[order[-1]]:
                order.pop()
            if not order:
                break
            if hard and rng.random() < self.hard_fraction:
                seed = order.pop()
                add(seed)
                k, checked = self.neighbours, 0
                while len(batch) < self.batch_size and checked < len(self.positives):
                    near = self._nearest(seed, k)
                    for j in near[checked:]:
                        if len(batch) == self.batch_size:
                            break
                        if not used[j] and not self._conflicts(int(j), batch_pos, batch_tiles):
                            add(int(j))
                    checked, k = len(near), 2 * k
            # Fill up at random; samples that conflict now wait for a later batch.
            skipped = []
            while len(batch) < self.batch_size and order:
                i = order.pop()
                if used[i]:
                    continue
                if self._conflicts(i, batch_pos, batch_tiles):
                    skipped.append(i)
                else:
                    add(i)
            order.extend(reversed(skipped))
            if len(batch) == self.batch_size:
                yield batch
