from uuid import UUID

import django_filters
from django.conf import settings
from django.core.cache import cache
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from commands import selectors, services
from commands.markers import marker_key, queue_scope
from commands.models import Command, CommandGroup
from commands.serializers import (
    BulkCommandSerializer,
    CommandGroupSerializer,
    CommandOptionsSerializer,
    CommandReportSerializer,
    CommandSerializer,
    PendingCommandSerializer,
    PendingQuerySerializer,
)
from devices.auth import DeviceKeyAuthentication, IsDevice, auth_scope, require_same_device
from devices.identity import DeviceIdentity
from devices.selectors import device_get
from homepot.api import HasPermissions
from homepot.errors import NotFoundError
from homepot.longpoll import ADVERT_HEADER, MARKER_HEADER, MODE_HEADER, WAKE_HEADER

POLL_HEADER = "X-Poll-Interval"
IDEMPOTENCY_KEY_MAX_CHARS = 128
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Retrying with the same key and body returns the first request's result "
    "(200). A key is the caller's and stands for one request: reused with another body or "
    "device it is refused (422, code idempotency_key_reused). At most "
    f"{IDEMPOTENCY_KEY_MAX_CHARS} characters.",
)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
        # Cutting it would make two keys that differ only at the end one key.
        raise ValidationError(
            {"Idempotency-Key": f"At most {IDEMPOTENCY_KEY_MAX_CHARS} characters."}
        )
    return key or None


class CommandFilter(django_filters.FilterSet):
    class Meta:
        model = Command
        fields = ["status", "command_type"]


class DeviceCommandsApi(generics.ListAPIView):
    """GET: a device's command history. POST: queue a command for it."""

    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["commands.view_command"], "POST": ["commands.add_command"]}
    serializer_class = CommandSerializer
    filterset_class = CommandFilter
    error_statuses = (409, 422)
    queryset = Command.objects.none()  # for the schema; get_queryset() serves requests

    def get_queryset(self):  # noqa: ANN201 (DRF hook)
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        device = device_get(self.kwargs["device_id"])
        return Command.objects.filter(device=device).select_related("device", "group", "created_by")

    @extend_schema(
        request=CommandOptionsSerializer,
        responses={201: CommandSerializer, 200: CommandSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    def post(self, request: Request, device_id: str) -> Response:
        serializer = CommandOptionsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = services.CommandSpec.validated(**serializer.validated_data)
        command, created = services.command_enqueue(
            actor=request.user,
            device=device_get(device_id),
            spec=spec,
            idempotency_key=_idempotency_key(request),
        )
        return Response(
            CommandSerializer(command).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class BulkCommandsApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"POST": ["commands.add_command"]}
    error_statuses = (404, 422)  # 404: a listed device is unknown

    @extend_schema(
        request=BulkCommandSerializer,
        responses={201: CommandGroupSerializer, 200: CommandGroupSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
        description="Queue one command for a list of devices, or for a site's devices "
        "(optionally of one type). Read the group back at /api/v1/command-groups/{group_id}.",
    )
    def post(self, request: Request) -> Response:
        serializer = BulkCommandSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        target = {k: data.pop(k) for k in ("device_ids", "site", "device_type") if k in data}
        devices = services.devices_for_bulk(
            public_ids=target.get("device_ids"),
            site_public_id=target.get("site"),
            device_type=target.get("device_type"),
        )
        group, created = services.commands_enqueue_bulk(
            actor=request.user,
            devices=devices,
            spec=services.CommandSpec.validated(**data),
            target=target,
            idempotency_key=_idempotency_key(request),
        )
        body = CommandGroupSerializer(
            group, context={"counts": selectors.command_group_counts(group)}
        ).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class CommandGroupDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["commands.view_command"]}

    @extend_schema(responses=CommandGroupSerializer)
    def get(self, request: Request, group_id: UUID) -> Response:
        group = CommandGroup.objects.select_related("created_by").filter(public_id=group_id).first()
        if group is None:
            raise NotFoundError("Command group not found.")
        counts = selectors.command_group_counts(group)
        return Response(CommandGroupSerializer(group, context={"counts": counts}).data)


class CommandDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["commands.view_command"]}

    @extend_schema(responses=CommandSerializer)
    def get(self, request: Request, command_id: UUID) -> Response:
        return Response(CommandSerializer(selectors.command_get(command_id)).data)


class CommandCancelApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"POST": ["commands.cancel_command"]}

    @extend_schema(
        request=None,
        responses={
            200: CommandSerializer,
            409: OpenApiResponse(description="already running or finished"),
        },
        description="Cancel a command the agent has not started. A QUEUED command is never "
        "delivered; a DELIVERED one is refused when the agent acknowledges it. A command "
        "already IN_PROGRESS cannot be canceled (409).",
    )
    def post(self, request: Request, command_id: UUID) -> Response:
        command = services.command_cancel(
            actor=request.user, command=selectors.command_get(command_id)
        )
        return Response(CommandSerializer(command).data)


# --- Device side -------------------------------------------------------------------------------


class PendingCommandsApi(APIView):
    authentication_classes = [DeviceKeyAuthentication]
    permission_classes = [IsDevice]

    @extend_schema(
        parameters=[PendingQuerySerializer],
        responses=PendingCommandSerializer(many=True),
        description="The device's queued commands, oldest first, now marked delivered. "
        f"The {POLL_HEADER} response header advises when to poll again (seconds). "
        f"A server that long-polls sends {ADVERT_HEADER} (the largest `wait`, seconds) "
        "on polls and heartbeats.",
    )
    def get(self, request: Request) -> Response:
        limit, wait = None, 0
        if request.query_params:  # the plain poll stays free of serializer work
            query = PendingQuerySerializer(data=request.query_params)
            query.is_valid(raise_exception=True)
            limit = query.validated_data.get("limit")
            wait = query.validated_data.get("wait", 0)
        # Set only by homepot.longpoll's router, which strips it from clients' requests.
        long_poll = request.headers.get(MODE_HEADER)
        commands = services.commands_deliver(
            identity=request.user, limit=limit, fresh=long_poll == "recheck"
        )
        if not commands:  # the hot path: nothing to serialize
            headers = {POLL_HEADER: str(settings.COMMAND_POLL_IDLE_SECONDS)}
            if wait and long_poll:
                headers.update(_wake_headers(request.user))
            return Response([], headers=headers)
        return Response(
            PendingCommandSerializer(commands, many=True).data,
            headers={POLL_HEADER: str(settings.COMMAND_POLL_BUSY_SECONDS)},
        )


def _wake_headers(identity: DeviceIdentity) -> dict[str, str]:
    """What wakes this device's long poll: an enqueue for it, or a change of its keys."""
    return {
        WAKE_HEADER: f"{queue_scope(identity.pk)} {auth_scope(identity.public_id)}",
        MARKER_HEADER: cache.make_key(marker_key(identity.pk)),
    }


class CommandAckApi(APIView):
    authentication_classes = [DeviceKeyAuthentication]
    permission_classes = [IsDevice]
    error_statuses = (409,)  # not delivered, or canceled

    @extend_schema(request=None, responses=PendingCommandSerializer)
    def post(self, request: Request, device_id: str, command_id: UUID) -> Response:
        require_same_device(request.user, device_id)
        command = services.command_ack(identity=request.user, public_id=command_id)
        return Response(PendingCommandSerializer(command).data)


class CommandReportApi(APIView):
    authentication_classes = [DeviceKeyAuthentication]
    permission_classes = [IsDevice]
    error_statuses = (409,)  # already final, or never delivered

    @extend_schema(request=CommandReportSerializer, responses=PendingCommandSerializer)
    def put(self, request: Request, command_id: UUID) -> Response:
        serializer = CommandReportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = {k: v for k, v in serializer.validated_data.items() if v is not None}
        command = services.command_report(identity=request.user, public_id=command_id, **data)
        return Response(PendingCommandSerializer(command).data)
