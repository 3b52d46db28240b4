"""GET /api/v1/events: the event feed integrations poll (devices/feed.py)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from devices import selectors
from devices.event_kinds import EVENT_KINDS, event_kind_filter_values, event_kinds_expand
from devices.feed import FEED_START, FeedCursor, events_feed
from devices.models import Event
from homepot.api import HasPermissions

FEED_PAGE_SIZE = 100
FEED_MAX_PAGE_SIZE = 500


class EventFeedQuerySerializer(serializers.Serializer):
    after = serializers.CharField(required=False, trim_whitespace=False)
    kind = serializers.CharField(required=False, trim_whitespace=False)
    device = serializers.CharField(required=False, trim_whitespace=False)
    site = serializers.CharField(required=False, trim_whitespace=False)
    page_size = serializers.IntegerField(
        min_value=1, max_value=FEED_MAX_PAGE_SIZE, default=FEED_PAGE_SIZE
    )

    def validate_after(self, value: str) -> FeedCursor:
        try:
            return FeedCursor.parse(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error), code="invalid_cursor") from error

    def validate_kind(self, value: str) -> list[str]:
        try:
            return event_kinds_expand(value.split(","))
        except ValueError as error:
            raise serializers.ValidationError(str(error), code="invalid_choice") from error


class FeedEventSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=list(EVENT_KINDS))
    device = serializers.CharField(
        source="device.public_id", allow_null=True, help_text="device id"
    )
    site = serializers.CharField(
        source="device.site.public_id", allow_null=True, help_text="the device's site id"
    )
    command = serializers.UUIDField(
        source="command.public_id", allow_null=True, help_text="command id"
    )
    alert = serializers.IntegerField(source="alert_id", allow_null=True, help_text="alert id")

    class Meta:
        model = Event
        fields = [
            "id",
            "kind",
            "message",
            "device",
            "site",
            "command",
            "alert",
            "data",
            "created_at",
        ]


class EventFeedPageSerializer(serializers.Serializer):
    results = FeedEventSerializer(many=True)
    next = serializers.CharField(
        help_text="The cursor to send as `after` next time: after the last event here, "
        "or, on a short page, after everything final so far. Always set."
    )


KIND_PARAMETER = OpenApiParameter(
    "kind",
    {"type": "array", "items": {"type": "string", "enum": event_kind_filter_values()}},
    style="form",
    explode=False,
    description="Only these kinds, comma-separated; `<family>.*` names every kind of a family.",
)


class EventFeedApi(APIView):
    """Events oldest first, every event once, for integrations that poll."""

    permission_classes = [HasPermissions]
    required_permissions = {"GET": ["devices.view_event"]}
    error_statuses = (404,)  # an unknown device or site

    @extend_schema(
        parameters=[
            OpenApiParameter("after", str, description="the `next` of the previous answer"),
            KIND_PARAMETER,
            OpenApiParameter("device", str, description="only this device's (device id)"),
            OpenApiParameter("site", str, description="only the devices of this site (site id)"),
            OpenApiParameter("page_size", int, description=f"1-{FEED_MAX_PAGE_SIZE}"),
        ],
        responses=EventFeedPageSerializer,
        description="Events in the order they became final, from the start (or after "
        "`after`). Poll with the `next` of each answer: no event is skipped or repeated, "
        "even one whose transaction committed late. An event shows once every transaction "
        "that was writing when it was written has ended.",
    )
    def get(self, request: Request) -> Response:
        query = EventFeedQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        page = events_feed(
            after=params.get("after", FEED_START),
            kinds=params.get("kind"),
            device=selectors.device_get(params["device"]) if "device" in params else None,
            site=selectors.site_get(params["site"]) if "site" in params else None,
            limit=params["page_size"],
        )
        body = {"results": page.events, "next": str(page.next)}
        return Response(EventFeedPageSerializer(body).data)
