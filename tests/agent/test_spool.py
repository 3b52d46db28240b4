"""The agent's on-disk spool."""

from homepot_agent.spool import Spool


def samples(*values: float) -> list[tuple[float, dict[str, float]]]:
    return [(1000.0 + v, {"v": v}) for v in values]


def test_samples_come_back_oldest_first_under_one_batch_id(tmp_path):
    spool = Spool(tmp_path / "s.db", max_samples=100)
    spool.add(samples(1, 2, 3))

    batch = spool.oldest_batch(limit=10)

    assert [m["v"] for _, m in batch.samples] == [1, 2, 3]
    assert spool.oldest_batch(limit=10).batch_id == batch.batch_id  # stable for retries
    spool.remove_batch(batch.batch_id)
    assert spool.depth() == 0


def test_a_batch_keeps_the_id_it_was_first_sent_under(tmp_path):
    spool = Spool(tmp_path / "s.db", max_samples=100)
    spool.add(samples(1, 2), batch_id="first-try")
    spool.add(samples(3))

    assert spool.oldest_batch(limit=10).batch_id == "first-try"
    spool.remove_batch("first-try")
    assert [m["v"] for _, m in spool.oldest_batch(limit=10).samples] == [3]


def test_when_full_the_oldest_go_first_and_are_counted(tmp_path):
    spool = Spool(tmp_path / "s.db", max_samples=3)

    spool.add(samples(1, 2))
    spool.add(samples(3, 4, 5))

    assert spool.depth() == 3
    assert spool.dropped() == 2
    assert [m["v"] for _, m in spool.oldest_batch(limit=10).samples] == [3, 4, 5]


def test_the_spool_survives_a_restart_and_never_reuses_batch_ids(tmp_path):
    first = Spool(tmp_path / "s.db", max_samples=10)
    first.add(samples(1))
    batch_id = first.oldest_batch(limit=10).batch_id
    first.close()

    again = Spool(tmp_path / "s.db", max_samples=10)
    assert again.oldest_batch(limit=10).batch_id == batch_id
    other = Spool(tmp_path / "other.db", max_samples=10)
    other.add(samples(1))
    assert other.oldest_batch(limit=10).batch_id != batch_id


def test_batches_are_limited_in_size(tmp_path):
    spool = Spool(tmp_path / "s.db", max_samples=100)
    spool.add(samples(*range(7)))

    assert len(spool.oldest_batch(limit=3).samples) == 3
