"""The agent meets 503 auth_busy (its key is a legacy bcrypt hash and every
slot for checking one is taken): it waits Retry-After, keeps its key and its
samples, and is accepted when it comes back."""

import pytest
from homepot_agent import cli
from homepot_agent.config import load_config

from analytics.models import Sample
from devices import auth
from devices.keys import legacy_bcrypt_hash, parse_api_key
from devices.models import DeviceCredential
from tests.agent.helpers import Clock, start_agent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def legacy_agent_config(registered):
    """The enrolled agent pi-e2e, its key stored as HOMEPOT stored keys before: bcrypt."""
    secret = parse_api_key(cli.read_key(load_config(registered, environ={}))).secret
    DeviceCredential.objects.filter(device__public_id="pi-e2e").update(
        key_hash=legacy_bcrypt_hash(secret)
    )
    return registered


def test_the_agent_waits_out_auth_busy_and_keeps_its_key_and_samples(legacy_agent_config, settings):
    settings.DEVICE_AUTH_BCRYPT_CONCURRENCY = 1
    clock = Clock()
    agent = start_agent(legacy_agent_config, clock)
    collected = []
    agent.collect = lambda: collected.append(1.0) or {"seq": float(len(collected))}
    agent.pushing.due = clock.now

    with auth._bcrypt_slots.slot(1):  # another request is checking a bcrypt hash
        agent.step()

    failure = agent.last_failure
    assert (failure.status, 1 <= failure.retry_after <= 5) == (503, True)
    assert agent.pushing.due >= clock.now + failure.retry_after
    assert not agent.key_refused
    assert agent.spool.depth() == len(collected) >= 1
    clock.now = agent.pushing.due
    agent.step()
    assert agent.spool.depth() == 0
    assert not agent.key_refused
    assert Sample.objects.filter(device__public_id="pi-e2e").count() == len(collected)
    assert DeviceCredential.objects.get(device__public_id="pi-e2e").key_hash.startswith("hmac")
