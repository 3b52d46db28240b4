"""The SSH targets API: targets (a device with SSH settings), a check run now,
accepting an offered host key, and the registry of checks."""

import django_filters
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.models import SshCheck, SshTarget
from devices.ssh import runner, services
from devices.ssh.breaker import circuit_state
from devices.ssh.serializers import (
    HostKeyAcceptSerializer,
    RoundOutcomeSerializer,
    SshCheckCreateSerializer,
    SshCheckSerializer,
    SshTargetChangeSerializer,
    SshTargetCreateSerializer,
    SshTargetSerializer,
)
from homepot.api import HasPermissions
from homepot.errors import NotFoundError

VIEW = ["devices.view_sshtarget"]
# Running a round and pinning a key change the target's state: operators only.
CHANGE = ["devices.change_sshtarget"]
NEVER_CHECKED = "never"


def ssh_targets() -> QuerySet:
    """Targets with what their detail shows, in a fixed number of queries."""
    return SshTarget.objects.select_related("device__site", "powered_by").prefetch_related(
        "target_checks__ssh_check"
    )


def ssh_target_get(public_id: str) -> SshTarget:
    target = ssh_targets().filter(device__public_id=public_id).first()
    if target is None:
        raise NotFoundError(f"SSH target {public_id!r} not found.")
    return target


class SshTargetFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(field_name="device__site__public_id")
    last_status = django_filters.ChoiceFilter(
        choices=[(s.value or NEVER_CHECKED, s.label) for s in SshTarget.LastStatus],
        method="last_status_filter",
    )

    class Meta:
        model = SshTarget
        fields = ["site", "enabled", "last_status"]

    def last_status_filter(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(last_status="" if value == NEVER_CHECKED else value)


class SshTargetListCreateApi(generics.ListAPIView):
    permission_classes = [HasPermissions]
    required_permissions = {
        "GET": VIEW,
        "POST": ["devices.add_sshtarget", "devices.add_device"],
    }
    error_statuses = (409,)  # the device id exists
    serializer_class = SshTargetSerializer
    filterset_class = SshTargetFilter
    queryset = ssh_targets()

    @extend_schema(
        request=SshTargetCreateSerializer,
        responses={201: SshTargetSerializer},
        description="Create the device (type `wet_board` unless given) and its SSH target "
        "with its checks, in one transaction. 409 `device_exists` if the device id is taken.",
    )
    def post(self, request: Request) -> Response:
        serializer = SshTargetCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target = services.ssh_target_create(actor=request.user, **serializer.validated_data)
        return Response(
            SshTargetSerializer(ssh_target_get(target.device.public_id)).data,
            status=status.HTTP_201_CREATED,
        )


class SshTargetDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {
        "GET": VIEW,
        "PATCH": CHANGE,
        "DELETE": ["devices.delete_sshtarget", "devices.decommission"],
    }

    @extend_schema(responses=SshTargetSerializer)
    def get(self, request: Request, device_id: str) -> Response:
        return Response(SshTargetSerializer(ssh_target_get(device_id)).data)

    @extend_schema(
        request=SshTargetChangeSerializer,
        responses=SshTargetSerializer,
        description="Change connection settings, checks (the list replaces the target's), "
        "intervals, enabled, via, powered_by. A new host, port, username or host key closes "
        "the circuit, forgets the offered key and makes the checks due at once.",
    )
    def patch(self, request: Request, device_id: str) -> Response:
        target = ssh_target_get(device_id)
        serializer = SshTargetChangeSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.ssh_target_update(
            actor=request.user, target=target, changes=serializer.validated_data
        )
        return Response(SshTargetSerializer(ssh_target_get(device_id)).data)

    @extend_schema(
        responses={204: None},
        description="Remove the SSH settings and decommission the device: its telemetry, "
        "events and audit trail stay, and the device id is not reused.",
    )
    def delete(self, request: Request, device_id: str) -> Response:
        services.ssh_target_delete(actor=request.user, target=ssh_target_get(device_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SshTargetCheckApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"POST": CHANGE}

    @extend_schema(
        request=None,
        responses=RoundOutcomeSerializer,
        description="Run the target's checks now, synchronously within their timeouts, "
        "and record the outcome as a scheduled round would. 200 whatever the outcome: "
        "the body is the report (`status` ok, failed, host_key_mismatch or circuit_open; "
        "each check's metrics or error).",
    )
    def post(self, request: Request, device_id: str) -> Response:
        target = ssh_target_get(device_id)
        outcome = runner.ssh_target_check_now(target=target, actor=request.user)
        target.refresh_from_db()
        report = {
            "status": outcome.status,
            "error": outcome.error,
            "circuit": circuit_state(target, timezone.now()).value,
            "offered_host_key_fingerprint": outcome.offered_fingerprint,
            "checks": outcome.checks,
        }
        return Response(RoundOutcomeSerializer(report).data)


class SshTargetAcceptHostKeyApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"POST": CHANGE}
    error_statuses = (409,)  # nothing offered, or another key than the fingerprint's

    @extend_schema(
        request=HostKeyAcceptSerializer,
        responses=SshTargetSerializer,
        description="Pin the key the host last offered, if `fingerprint` is that key's "
        "(409 `no_offered_host_key`, 409 `fingerprint_mismatch`). Closes the circuit and "
        "makes the checks due at once. Audited.",
    )
    def post(self, request: Request, device_id: str) -> Response:
        serializer = HostKeyAcceptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.ssh_target_host_key_accept(
            actor=request.user,
            target=ssh_target_get(device_id),
            fingerprint=serializer.validated_data["fingerprint"],
        )
        return Response(SshTargetSerializer(ssh_target_get(device_id)).data)


class SshCheckListCreateApi(generics.ListAPIView):
    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["devices.view_sshcheck"], "POST": ["devices.add_sshcheck"]}
    error_statuses = (409,)  # the name is taken
    serializer_class = SshCheckSerializer
    queryset = SshCheck.objects.all()

    @extend_schema(
        request=SshCheckCreateSerializer,
        responses={201: SshCheckSerializer},
        description="Add an operator-defined check (parsers: number, key_equals, key_colon, "
        "json). Built-in checks are defined in code and cannot be changed here.",
    )
    def post(self, request: Request) -> Response:
        serializer = SshCheckCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        check = services.ssh_check_create(actor=request.user, **serializer.validated_data)
        return Response(SshCheckSerializer(check).data, status=status.HTTP_201_CREATED)
