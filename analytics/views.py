from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import live, queries, services
from analytics.models import ThermalFrame
from analytics.serializers import (
    FLAT_METRICS,
    BatchSerializer,
    FlatMetricsSerializer,
    IngestResultSerializer,
    LatestMetricsSerializer,
    MetricNamePageSerializer,
    SeriesQuerySerializer,
    SeriesSerializer,
    ThermalFrameInputSerializer,
    ThermalFrameSerializer,
)
from devices.auth import DeviceKeyAuthentication, IsDevice, require_same_device
from devices.selectors import device_get
from homepot.api import HasPermissions, Pagination
from homepot.errors import NotFoundError
from homepot.parsers import LenientJSONParser


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "too_large"


def _refuse_large_bodies(request: Request) -> None:
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.TELEMETRY_MAX_BODY_BYTES:
        raise PayloadTooLarge(f"At most {settings.TELEMETRY_MAX_BODY_BYTES} bytes per request.")


class DeviceMetricsIngestApi(APIView):
    authentication_classes = [DeviceKeyAuthentication]
    permission_classes = [IsDevice]
    parser_classes = [LenientJSONParser]

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="TelemetryPayload",
            serializers=[FlatMetricsSerializer, BatchSerializer],
            resource_type_field_name=None,
        ),
        responses={201: IngestResultSerializer, 200: IngestResultSerializer},
        description="Either HOMEPOT's flat payload, stored under the field names (and the "
        "names in extra_metrics) at `timestamp` or now; or a batch `{batch_id, samples}` with "
        "the device's own timestamps. A batch id seen before is answered 200 with "
        "`duplicate: true` and nothing stored twice.",
    )
    def post(self, request: Request) -> Response:
        _refuse_large_bodies(request)
        is_batch = isinstance(request.data, dict) and "samples" in request.data
        serializer = (BatchSerializer if is_batch else FlatMetricsSerializer)(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        require_same_device(request.user, data.get("public_id"))
        if is_batch:
            samples, batch_id = data["samples"], data["batch_id"]
        else:
            samples, batch_id = [_flat_sample(data)], None
        result = services.telemetry_ingest(
            identity=request.user, samples=samples, batch_id=batch_id
        )
        return Response(
            _result_body(result),
            status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED,
        )


def _result_body(result: services.IngestResult) -> dict:
    """IngestResultSerializer's output, built directly: four plain values are not
    worth a serializer (nor dataclasses.asdict's deep copy) on the busiest
    device endpoint."""
    return {
        "batch_id": result.batch_id,
        "samples": result.samples,
        "values": result.values,
        "duplicate": result.duplicate,
    }


def _flat_sample(data: dict) -> tuple:
    metrics = {name: data[name] for name in FLAT_METRICS if data.get(name) is not None}
    metrics.update(data.get("extra_metrics", {}))
    return data.get("timestamp") or timezone.now(), metrics


class ThermalFrameIngestApi(APIView):
    authentication_classes = [DeviceKeyAuthentication]
    permission_classes = [IsDevice]
    parser_classes = [LenientJSONParser]

    @extend_schema(request=ThermalFrameInputSerializer, responses={201: ThermalFrameSerializer})
    def post(self, request: Request) -> Response:
        _refuse_large_bodies(request)
        serializer = ThermalFrameInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        frame = services.thermal_frame_store(
            identity=request.user,
            ts=data.get("ts") or timezone.now(),
            width=data["width"],
            height=data["height"],
            values=data["values"],
        )
        return Response(ThermalFrameSerializer(frame).data, status=status.HTTP_201_CREATED)


class TelemetryReadApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["analytics.view_sample"]}


class DeviceMetricSeriesApi(TelemetryReadApi):
    @extend_schema(
        parameters=[SeriesQuerySerializer],
        responses=SeriesSerializer,
        description="One metric of one device over [start, end) (default: the last 24 hours) "
        "in buckets of `step` seconds, aggregated with `agg`. Steps that are whole hours read "
        "hour rollups, whole minutes minute rollups, others raw samples. A range that starts "
        "before a source's retention is answered from the next coarser rollups that reach "
        "back to it (hour rollups are kept longest), with `step` raised to a whole multiple "
        "of their resolution; `resolution` and `step` in the answer say what was used.",
    )
    def get(self, request: Request, device_id: str) -> Response:
        query = SeriesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        device = device_get(device_id)
        end = params.get("end") or timezone.now()
        series = queries.metric_series(
            device_pk=device.pk,
            name=params["name"],
            start=params.get("start") or end - timedelta(hours=24),
            end=end,
            step=params["step"],
            agg=params["agg"],
        )
        # Built directly: thousands of points through a serializer field by
        # field cost more than the query itself. SeriesSerializer documents it.
        return Response({**vars(series), "device_id": device.public_id})


class DeviceLatestMetricsApi(TelemetryReadApi):
    @extend_schema(responses=LatestMetricsSerializer)
    def get(self, request: Request, device_id: str) -> Response:
        device = device_get(device_id)
        body = {"device_id": device.public_id, "metrics": queries.latest_values(device.pk)}
        return Response(LatestMetricsSerializer(body).data)


class MetricNamesApi(TelemetryReadApi):
    """Every metric name (or one device's), sorted, in pages like every other list."""

    pagination_class = Pagination
    error_statuses = (404,)  # an unknown device, or a page past the end

    @extend_schema(
        parameters=[
            OpenApiParameter("device", OpenApiTypes.STR, description="only this device's"),
            OpenApiParameter("page", OpenApiTypes.INT),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="at most 500"),
        ],
        responses=MetricNamePageSerializer,
    )
    def get(self, request: Request) -> Response:
        public_id = request.query_params.get("device")
        device_pk = device_get(public_id).pk if public_id else None
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queries.metric_names(device_pk), request, view=self)
        return paginator.get_paginated_response(page)


class DeviceThermalLatestApi(TelemetryReadApi):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "live",
                OpenApiTypes.BOOL,
                description="the caller is watching: the device sends frames fast for "
                "THERMAL_LIVE_LEASE_SECONDS more",
            )
        ],
        responses=ThermalFrameSerializer,
    )
    def get(self, request: Request, device_id: str) -> Response:
        device = device_get(device_id)
        if request.query_params.get("live") in ("1", "true"):
            # before the 404: a view opened before the first frame must still ask for it
            live.thermal_lease_refresh(device.pk)
        frame = ThermalFrame.objects.filter(device_id=device.pk).select_related("device").first()
        if frame is None:
            raise NotFoundError("No thermal frame from this device yet.")
        return Response(ThermalFrameSerializer(frame).data)
