"""Agent identity: batch ids stay unique when a state directory is copied, and
every agent process says which instance it is."""

import re
import shutil
import time

import pytest
from homepot_agent.spool import Spool

from analytics.models import Sample
from devices.models import Device
from tests.agent.helpers import Clock, start_agent

pytestmark = pytest.mark.django_db(transaction=True)


def test_copies_of_one_spool_never_make_the_same_batch_id(tmp_path):
    original = Spool(tmp_path / "a" / "spool.sqlite3", max_samples=100)
    original.add([(1000.0, {"v": 1.0}), (1001.0, {"v": 2.0})])
    original.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    first = Spool(tmp_path / "a" / "spool.sqlite3", max_samples=100).oldest_batch(10)
    second = Spool(tmp_path / "b" / "spool.sqlite3", max_samples=100).oldest_batch(10)

    assert first.batch_id != second.batch_id


def test_two_agents_from_a_copied_state_directory_lose_no_samples(registered, tmp_path):
    agent = start_agent(registered, Clock())
    values = iter(range(100))
    agent.collect = lambda: {"seq": float(next(values))}
    agent.collect_once()
    agent.flush()  # one sample waits in the spool
    agent.spool.close()
    agent.ledger.close()
    shutil.copytree(tmp_path / "state", tmp_path / "clone")

    first = start_agent(registered, Clock())
    clone = start_agent(registered, Clock(), state_dir=tmp_path / "clone")
    first.collect = lambda: {"seq": 10.0}
    clone.collect = lambda: {"seq": 20.0}
    for each in (first, clone):
        now = time.time() + (1 if each is first else 2)  # distinct device timestamps
        each.wall_clock = lambda now=now: now
        each.collect_once()
        each.flush()
        assert each.push_once()

    seqs = sorted(
        Sample.objects.filter(device__public_id="pi-e2e", metric__name="seq").values_list(
            "value", flat=True
        )
    )
    assert seqs == [0.0, 10.0, 20.0]


def test_each_agent_process_reports_its_own_instance_id(registered):
    first = start_agent(registered, Clock())
    assert first.push_once()
    device = Device.objects.get(public_id="pi-e2e")
    instance = device.attributes["instance_id"]

    again = start_agent(registered, Clock())
    assert again.push_once()

    device.refresh_from_db()
    assert re.fullmatch(r"[0-9a-f]{32}", instance)
    assert re.fullmatch(r"[0-9a-f]{32}", device.attributes["instance_id"])
    assert device.attributes["instance_id"] != instance
