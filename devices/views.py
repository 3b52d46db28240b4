from datetime import timedelta

import django_filters
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from devices import selectors, services
from devices.auth import DeviceIdentity, DeviceKeyAuthentication, IsDevice, require_same_device
from devices.models import Device, Site
from devices.serializers import (
    DeviceRegisteredSerializer,
    DeviceRegisterSerializer,
    DeviceSerializer,
    EnrollmentTokenCreateSerializer,
    EnrollmentTokenIssuedSerializer,
    HeartbeatResponseSerializer,
    HeartbeatSerializer,
    IssuedKeySerializer,
    SiteSerializer,
)
from homepot.api import HasPermissions
from homepot.api_tokens import IntegrationTokenAuthentication
from homepot.errors import Forbidden

USER_AUTHENTICATION = [IntegrationTokenAuthentication, SessionAuthentication]
ENROLLMENT_HEADER = "X-Enrollment-Token"


class SiteListCreateApi(generics.ListAPIView):
    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["devices.view_site"], "POST": ["devices.add_site"]}
    error_statuses = (409,)  # the site exists
    serializer_class = SiteSerializer
    queryset = Site.objects.all()

    @extend_schema(request=SiteSerializer, responses={201: SiteSerializer})
    def post(self, request: Request) -> Response:
        serializer = SiteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        site = services.site_create(actor=request.user, **serializer.validated_data)
        return Response(SiteSerializer(site).data, status=status.HTTP_201_CREATED)


class SiteDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["devices.view_site"]}

    @extend_schema(responses=SiteSerializer)
    def get(self, request: Request, site_id: str) -> Response:
        return Response(SiteSerializer(selectors.site_get(site_id)).data)


class EnrollmentTokenCreateApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"POST": ["devices.add_enrollmenttoken"]}

    @extend_schema(
        request=EnrollmentTokenCreateSerializer,
        responses={201: EnrollmentTokenIssuedSerializer},
        description="Create a site enrollment token. The token is in this response only.",
    )
    def post(self, request: Request, site_id: str) -> Response:
        serializer = EnrollmentTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        hours = data.get("expires_in_hours")
        issued = services.enrollment_token_create(
            actor=request.user,
            site=selectors.site_get(site_id),
            expires_in=timedelta(hours=hours) if hours else None,
            max_uses=data["max_uses"],
            label=data["label"],
        )
        return Response(
            EnrollmentTokenIssuedSerializer(issued).data, status=status.HTTP_201_CREATED
        )


class DeviceRegisterApi(APIView):
    """Register a device with a site enrollment token, or as an operator."""

    authentication_classes = USER_AUTHENTICATION
    permission_classes = [AllowAny]  # checked below: a token or an operator, never neither
    error_statuses = (409,)  # the device exists

    @extend_schema(
        request=DeviceRegisterSerializer,
        responses={201: DeviceRegisteredSerializer},
        parameters=[
            OpenApiParameter(
                ENROLLMENT_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Site enrollment token (agents). Operators authenticate instead.",
            )
        ],
    )
    def post(self, request: Request, site_id: str) -> Response:
        token = request.headers.get(ENROLLMENT_HEADER) or None
        user = request.user if request.user and request.user.is_authenticated else None
        if token is None:
            if user is None:
                self.permission_denied(request, message="Send an enrollment token or log in.")
            if not user.has_perm("devices.add_device"):
                raise Forbidden("You may not register devices.")
        serializer = DeviceRegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device, issued = services.device_register(
            site_public_id=site_id,
            actor=None if token else user,
            enrollment_token=token,
            **serializer.validated_data,
        )
        body = {
            **DeviceSerializer(device).data,
            "api_key": issued.api_key,
            "key_id": issued.credential.key_id,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class DeviceFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(field_name="site__public_id")
    q = django_filters.CharFilter(method="search", label="device id or name contains")

    class Meta:
        model = Device
        fields = ["site", "status", "device_type", "is_simulated"]

    def search(self, queryset, name: str, value: str):  # noqa: ANN001, ANN201 (django-filter hook)
        return queryset.filter(Q(public_id__icontains=value) | Q(name__icontains=value))


class DeviceListApi(generics.ListAPIView):
    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["devices.view_device"]}
    serializer_class = DeviceSerializer
    queryset = Device.objects.select_related("site")
    filterset_class = DeviceFilter


class DeviceDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["devices.view_device"]}

    @extend_schema(responses=DeviceSerializer)
    def get(self, request: Request, device_id: str) -> Response:
        return Response(DeviceSerializer(selectors.device_get(device_id)).data)


class DeviceRotateKeyApi(APIView):
    """Operators rotate any device's key (the old key stops at once); a device,
    authenticated with its current key, rotates its own (the old key keeps
    working for DEVICE_KEY_ROTATION_GRACE_SECONDS)."""

    authentication_classes = [DeviceKeyAuthentication, *USER_AUTHENTICATION]
    permission_classes = [IsDevice | HasPermissions]
    required_permissions = {"POST": ["devices.rotate_key"]}
    error_statuses = (409,)

    @extend_schema(
        request=None,
        responses={201: IssuedKeySerializer},
        description="A device may rotate only with its current key (a key in its grace "
        "period: 403 `key_not_current`) and at most once per "
        "DEVICE_KEY_SELF_ROTATION_MIN_SECONDS (429 `rotation_too_soon`, with Retry-After). "
        "A decommissioned device: 409.",
    )
    def post(self, request: Request, device_id: str) -> Response:
        if isinstance(request.user, DeviceIdentity):
            require_same_device(request.user, device_id)
        device = selectors.device_get(device_id)
        issued = services.device_key_rotate(device=device, actor=request.user)
        body = {
            "device_id": device.public_id,
            "api_key": issued.api_key,
            "key_id": issued.credential.key_id,
            "old_key_valid_until": issued.old_key_valid_until,
        }
        return Response(IssuedKeySerializer(body).data, status=status.HTTP_201_CREATED)


class DeviceRevokeApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"POST": ["devices.revoke_key"]}

    @extend_schema(request=None, responses=DeviceSerializer)
    def post(self, request: Request, device_id: str) -> Response:
        device = selectors.device_get(device_id)
        services.device_keys_revoke(device=device, actor=request.user)
        return Response(DeviceSerializer(device).data)


class DeviceDecommissionApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"POST": ["devices.decommission"]}
    error_statuses = (409,)  # already decommissioned

    @extend_schema(request=None, responses=DeviceSerializer)
    def post(self, request: Request, device_id: str) -> Response:
        device = selectors.device_get(device_id)
        services.device_decommission(device=device, actor=request.user)
        return Response(DeviceSerializer(device).data)


class HeartbeatApi(APIView):
    authentication_classes = [DeviceKeyAuthentication]
    permission_classes = [IsDevice]

    @extend_schema(request=HeartbeatSerializer, responses=HeartbeatResponseSerializer)
    def post(self, request: Request) -> Response:
        if request.data:  # a bare "I am alive" has nothing to validate or store
            serializer = HeartbeatSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            services.device_heartbeat(
                identity=request.user,
                attributes=serializer.validated_data.get("attributes"),
                agent_version=serializer.validated_data.get("agent_version"),
                client_address=BaseThrottle().get_ident(request),
            )
        # Two plain fields: built directly, this is the agents' hot path.
        return Response({"device_id": request.user.public_id, "server_time": timezone.now()})
