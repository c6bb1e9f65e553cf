"""The shard-sequential order (data.shard_order=shards) is drawn anew every epoch, both the order of the
shards and the order a reader's shuffle buffer hands its samples out in, and it stays a pure function of
(seed, epoch): fresh schedules, asked in any order, lay out the same epochs."""
import numpy as np

from vitlab.data.shard_order import ShardSchedule

SHARDS = np.repeat(np.arange(7), [10, 13, 9, 11, 12, 8, 14])  # 77 rows in 7 shards of unequal sizes
EPOCHS = 4


def _schedule(seed=0, world=1, rank=0, workers=1, buffer=6) -> ShardSchedule:
    spe = len(SHARDS) // 12  # 6 steps of 12 an epoch
    return ShardSchedule(SHARDS, seed, spe, spe * EPOCHS, 12, 12 // world, 1, world, rank, workers, buffer)


def test_each_epoch_lays_the_shards_out_in_another_order():
    s = _schedule()
    orders = [s.shard_order(e).tolist() for e in range(EPOCHS)]
    assert all(sorted(o) == list(range(7)) for o in orders)
    assert len({tuple(o) for o in orders}) == EPOCHS


def test_each_epoch_shuffles_the_samples_within_the_buffer_anew():
    """The same shard order and stretch in every epoch (one reader): only the buffer's draws can differ."""
    s = _schedule()
    order = s.shard_order(0)
    stream = np.concatenate([np.flatnonzero(SHARDS == k) for k in order])[:72]  # the one reader's stretch
    reads = [s.reader_rows(e, 0, order) for e in range(EPOCHS)]
    for rows in reads:
        assert sorted(rows.tolist()) == sorted(stream.tolist()) and rows.tolist() != stream.tolist()
        assert all(x in stream[: t + 6].tolist() for t, x in enumerate(rows.tolist()))  # within the buffer's window
    assert len({tuple(r.tolist()) for r in reads}) == EPOCHS


def test_the_order_is_a_pure_function_of_seed_and_epoch():
    def layout(s: ShardSchedule, epochs) -> dict:
        return {e: (s.shard_order(e).tolist(), [s.reader_rows(e, g).tolist() for g in range(4)]) for e in epochs}

    forward = layout(_schedule(world=2, workers=2), range(EPOCHS))
    backward = layout(_schedule(world=2, workers=2), reversed(range(EPOCHS)))  # another schedule, other call order
    assert forward == backward
    seen = [(m.step, m.k, m.rows.tolist()) for m in _schedule(world=2, rank=1, workers=2).iterate(0)]
    fresh = _schedule(world=2, rank=1, workers=2)
    assert seen == [(st, k, fresh.at(st, k).rows.tolist()) for st, k, _ in reversed(seen)][::-1]
    assert layout(_schedule(seed=1, world=2, workers=2), range(EPOCHS)) != forward
