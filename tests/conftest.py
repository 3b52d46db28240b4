from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from rest_framework.test import APIClient

from devices import services
from devices.models import Device, Site
from devices.presence import presence_cache_clear
from homepot.local_memory import local_memory
from homepot.roles import ADMIN, OPERATOR, VIEWER
from tests.receivers import http_receiver, https_receiver, smtp_receiver  # noqa: F401 (fixtures)
from tests.sshd import ssh_identity, ssh_session, sshd  # noqa: F401 (fixtures: the real sshd)
from tests.web_nodes import web_nodes  # noqa: F401 (fixture: real gunicorn web nodes)


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings) -> None:  # noqa: ANN001 (pytest-django fixture)
    # Production uses cost 12 (checked in test_device_keys); tests need not wait for it.
    settings.DEVICE_KEY_BCRYPT_ROUNDS = 4
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def _user_with_role(username: str, role: str) -> User:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=True)
    user.groups.set([Group.objects.get(name=role)])
    return user


@pytest.fixture
def viewer(db) -> User:  # noqa: ANN001
    return _user_with_role("vera", VIEWER)


@pytest.fixture
def operator(db) -> User:  # noqa: ANN001
    return _user_with_role("otto", OPERATOR)


@pytest.fixture
def admin_user(db) -> User:  # noqa: ANN001
    return _user_with_role("ada", ADMIN)


@pytest.fixture
def api_token(db) -> Callable[[User], str]:  # noqa: ANN001
    """An integration token for a user, as `manage.py homepot_token` issues it."""
    from homepot.api_tokens import api_token_issue

    def issue(user: User) -> str:
        return api_token_issue(user=user, expires_in=None)

    return issue


@pytest.fixture
def as_user(client: APIClient) -> Callable[[User], APIClient]:
    def login(user: User) -> APIClient:
        client.force_authenticate(user)
        return client

    return login


@pytest.fixture
def site(db) -> Site:  # noqa: ANN001
    return Site.objects.create(public_id="lab-1", name="Lab 1")


@pytest.fixture
def other_site(db) -> Site:  # noqa: ANN001
    return Site.objects.create(public_id="lab-2", name="Lab 2")


@dataclass
class Agent:
    """A registered device and the headers it authenticates with."""

    device: Device
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"HTTP_X_DEVICE_ID": self.device.public_id, "HTTP_X_API_KEY": self.api_key}


@pytest.fixture
def make_agent(site: Site) -> Callable[..., Agent]:
    def make(public_id: str = "pi-1", **fields: object) -> Agent:
        device, issued = services.device_register(
            site_public_id=fields.pop("site_public_id", site.public_id),
            actor=None,
            enrollment_token=None,
            public_id=public_id,
            name=fields.pop("name", public_id),
            device_type=fields.pop("device_type", "raspberry_pi"),
            **fields,
        )
        return Agent(device=device, api_key=issued.api_key)

    return make


@pytest.fixture
def agent(make_agent: Callable[..., Agent]) -> Agent:
    return make_agent()


@pytest.fixture
def enqueue(operator) -> Callable[..., "Command"]:  # noqa: F821
    """Queue a command the way the API does, as the operator."""
    from commands.services import CommandSpec, command_enqueue

    def queue(agent: Agent, command_type: str = "ping", payload: dict | None = None, **options):
        spec = CommandSpec.validated(command_type=command_type, payload=payload, **options)
        command, _ = command_enqueue(actor=operator, device=agent.device, spec=spec)
        return command

    return queue


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> None:
    # Each test's transaction is rolled back, and with it the metric names and
    # last_seen writes these per-process memos remember.
    from analytics.services import metric_id_cache_clear

    metric_id_cache_clear()
    presence_cache_clear()
    memory = local_memory()
    if memory is not None:
        memory.clear()
