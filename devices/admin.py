from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Field, Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from devices import selectors, services
from devices.admin_panels import device_actions, device_panel_render, device_panels_render
from devices.events import audit_record
from devices.models import (
    AuditEntry,
    Device,
    DeviceCredential,
    EnrollmentToken,
    Event,
    Site,
    SshCheck,
    SshTarget,
)
from devices.ssh.admin import SshCheckAdminMixin, SshTargetAdminMixin
from homepot.errors import ServiceError


def show_secrets_once(
    request: HttpRequest, *, title: str, label: str, secrets: list[tuple[str, str]], back_url: str
) -> TemplateResponse:
    """Render secrets straight into the response: never stored, never shown again."""
    context = {
        **admin.site.each_context(request),
        "title": title,
        "label": label,
        "secrets": secrets,
        "back_url": back_url,
    }
    response = TemplateResponse(request, "admin/devices/secrets_once.html", context)
    response["Cache-Control"] = "no-store"
    return response


class StrictObjectIdAdmin(admin.ModelAdmin):
    """An object id that cannot be a primary key (letters, NUL, out of range) is a
    404: Django would redirect to the index as if the object had been deleted,
    and our own lookups would fail with a 500."""

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Model | None:
        field = self.model._meta.get_field(from_field) if from_field else self.model._meta.pk
        if not _is_valid_value(field, object_id):
            raise Http404(f"No {self.model._meta.verbose_name} with id {object_id!r}.")
        return super().get_object(request, object_id, from_field)


def _is_valid_value(field: Field, raw: str) -> bool:
    if "\x00" in raw:
        return False
    try:
        value = field.to_python(raw)
    except ValidationError:
        return False
    if isinstance(value, int):
        low, high = connection.ops.integer_field_range(field.get_internal_type())
        return (low is None or value >= low) and (high is None or value <= high)
    return True


class ReadOnlyAdmin(StrictObjectIdAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class AuditedAdmin(StrictObjectIdAdmin):
    """Puts what the admin changes and deletes itself in the audit trail, with who
    did it. (Adds and actions go through the services, which audit them.) The
    admin runs a save or a delete in one transaction with its audit entry."""

    audit_name: str  # the first part of the audit action: "<audit_name>.change"

    def save_model(self, request: HttpRequest, obj: Model, form, change: bool) -> None:  # noqa: ANN001
        super().save_model(request, obj, form, change)
        if change and form.changed_data:
            changed = {name: _audit_value(form.cleaned_data[name]) for name in form.changed_data}
            audit_record(
                actor=request.user,
                action=f"{self.audit_name}.change",
                target=obj,
                data={"changed": changed},
            )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        audit_record(actor=request.user, action=f"{self.audit_name}.delete", target=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        # The list's "delete selected" action is not wrapped in a transaction by Django.
        with transaction.atomic():
            for obj in queryset:
                audit_record(actor=request.user, action=f"{self.audit_name}.delete", target=obj)
            super().delete_queryset(request, queryset)


def _audit_value(value: object) -> object:
    """A form value as the audit trail keeps it (JSON): a site by its public id."""
    if isinstance(value, Site):
        return value.public_id
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@admin.register(Site)
class SiteAdmin(AuditedAdmin):
    list_display = ["public_id", "name", "location", "device_count", "created_at"]
    search_fields = ["public_id", "name", "location"]
    audit_name = "site"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(device_count=Count("devices"))

    def get_readonly_fields(self, request: HttpRequest, obj: Site | None = None) -> list[str]:
        # Fixed once the site exists: agents enroll at /sites/{site_id}/devices.
        return [*self.readonly_fields, "public_id"] if obj else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Site, form, change: bool) -> None:  # noqa: ANN001
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new site is created as the API creates one (and audited there).
        site = services.site_create(actor=request.user, **form.cleaned_data)
        obj.pk = site.pk

    @admin.display(ordering="device_count", description="devices")
    def device_count(self, site: Site) -> int:
        return site.device_count


class CredentialInline(admin.TabularInline):
    model = DeviceCredential
    fields = ["key_id", "created_at", "created_by", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Device)
class DeviceAdmin(AuditedAdmin):
    list_display = [
        "public_id",
        "name",
        "site",
        "device_type",
        "status",
        "last_seen",
        "is_simulated",
        "agent_version",
    ]
    list_filter = ["status", "site", "device_type", "is_simulated"]
    search_fields = ["public_id", "name", "ip_address"]
    list_select_related = ["site"]
    audit_name = "device"
    readonly_fields = [
        "status",
        "last_seen",
        "agent_version",
        "attributes",
        "created_at",
        "decommissioned_at",
    ]
    inlines = [CredentialInline]
    own_actions = ["rotate_keys", "revoke_keys", "decommission"]

    @property
    def actions(self) -> list:
        # Read on each request: commands registers its queue actions when the
        # admin loads its module, which may be after this class is built.
        return [*self.own_actions, *device_actions()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        device = self.get_object(request, unquote(object_id))
        if device is not None:
            if request.method == "GET":
                self._warn_of_identity_conflict(request, device)
            extra_context = {**(extra_context or {}), **self._page_context(request, device)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list:
        panel = path(
            "<path:object_id>/panel/<slug:name>/",
            self.admin_site.admin_view(self.panel_view),
            name="devices_device_panel",
        )
        return [panel, *super().get_urls()]

    def panel_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        """One panel of the device page alone: the page's script polls it and swaps
        the parts marked live, so the page follows the device without a reload."""
        device = self.get_object(request, unquote(object_id))
        if device is None or not self.has_view_or_change_permission(request, device):
            raise Http404("No such device.")
        rendered = device_panel_render(request, device, name)
        if rendered is None:
            raise Http404("No such panel.")
        return TemplateResponse(request, rendered.template, {"panel": rendered.context})

    def _page_context(self, request: HttpRequest, device: Device) -> dict:
        """The latest events (not all: a long history would make a huge page) and
        the panels other apps registered for the device page."""
        events_url = reverse("admin:devices_event_changelist")
        return {
            "latest_events": selectors.device_events_latest(device=device),
            "all_events_url": f"{events_url}?device__id__exact={device.pk}",
            "homepot_panels": device_panels_render(request, device),
        }

    def _warn_of_identity_conflict(self, request: HttpRequest, device: Device) -> None:
        """Put a recent identity conflict at the top of the page until a new key
        (the remedy) is issued after it."""
        conflict = selectors.device_identity_conflict_latest(device=device)
        if conflict is None:
            return
        newest_key = selectors.device_newest_key_created(device=device)
        if newest_key is not None and newest_key > conflict.created_at:
            return
        when = conflict.created_at.strftime("%Y-%m-%d %H:%M UTC")
        self.message_user(request, f"{conflict.message} (recorded {when})", messages.WARNING)

    def get_readonly_fields(self, request: HttpRequest, obj: Device | None = None) -> list[str]:
        # The public id is fixed once the device exists: agents and history use it.
        return [*self.readonly_fields, "public_id"] if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Device, form, change: bool) -> None:  # noqa: ANN001
        if change:
            super().save_model(request, obj, form, change)
            return
        data = {
            f: form.cleaned_data[f] for f in ["name", "device_type", "ip_address", "is_simulated"]
        }
        device, issued = services.device_register(
            site_public_id=form.cleaned_data["site"].public_id,
            actor=request.user,
            enrollment_token=None,
            public_id=form.cleaned_data["public_id"],
            checkin_interval_seconds=int(form.cleaned_data["checkin_interval"].total_seconds()),
            **data,
        )
        obj.pk = device.pk
        request._homepot_secrets = [(device.public_id, issued.api_key)]

    def response_add(
        self, request: HttpRequest, obj: Device, post_url_continue=None
    ) -> HttpResponse:  # noqa: ANN001
        return show_secrets_once(
            request,
            title=f"API key of {obj.public_id}",
            label="device",
            secrets=request._homepot_secrets,
            back_url=reverse("admin:devices_device_change", args=[obj.pk]),
        )

    def has_rotate_key_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("devices.rotate_key")

    def has_revoke_key_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("devices.revoke_key")

    def has_queue_command_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("commands.add_command")

    def has_decommission_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("devices.decommission")

    @admin.action(
        description="Rotate keys of the selected devices (shows the new keys once)",
        permissions=["rotate_key"],
    )
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        secrets = []
        for device in queryset:
            try:
                issued = services.device_key_rotate(device=device, actor=request.user)
            except ServiceError as exc:
                self.message_user(request, f"{device.public_id}: {exc.message}", messages.WARNING)
                continue
            secrets.append((device.public_id, issued.api_key))
        if not secrets:
            return None
        return show_secrets_once(
            request,
            title="New API keys",
            label="device",
            secrets=secrets,
            back_url=reverse("admin:devices_device_changelist"),
        )

    @admin.action(
        description="Revoke all API keys of the selected devices", permissions=["revoke_key"]
    )
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = sum(services.device_keys_revoke(device=d, actor=request.user) for d in queryset)
        self.message_user(request, f"Revoked {count} keys.")

    @admin.action(description="Decommission the selected devices", permissions=["decommission"])
    def decommission(self, request: HttpRequest, queryset: QuerySet) -> None:
        for device in queryset.filter(decommissioned_at__isnull=True):
            services.device_decommission(device=device, actor=request.user)
        self.message_user(request, "Decommissioned the selected devices.")


@admin.register(EnrollmentToken)
class EnrollmentTokenAdmin(AuditedAdmin):
    list_display = ["__str__", "site", "label", "uses", "max_uses", "expires_at", "revoked_at"]
    list_filter = ["site"]
    list_select_related = ["site"]  # both columns name the site
    fields = ["site", "label", "expires_at", "max_uses"]
    actions = ["revoke"]
    audit_name = "enrollment_token"

    def get_readonly_fields(
        self, request: HttpRequest, obj: EnrollmentToken | None = None
    ) -> list[str]:
        return (
            ["site", "label", "expires_at", "max_uses", "uses", "revoked_at", "created_by"]
            if obj
            else []
        )

    def get_fields(self, request: HttpRequest, obj: EnrollmentToken | None = None) -> list[str]:
        return self.get_readonly_fields(request, obj) if obj else self.fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"expires_at": timezone.now() + timedelta(hours=24), "max_uses": 1}

    def save_model(self, request: HttpRequest, obj: EnrollmentToken, form, change: bool) -> None:  # noqa: ANN001
        if change:  # nothing of a token can be edited; saving its page must not mint another
            return
        issued = services.enrollment_token_create(
            actor=request.user,
            site=obj.site,
            expires_in=obj.expires_at - timezone.now(),
            max_uses=obj.max_uses,
            label=obj.label,
        )
        obj.pk = issued.enrollment.pk
        request._homepot_secrets = [(str(issued.enrollment), issued.token)]

    def response_add(
        self, request: HttpRequest, obj: EnrollmentToken, post_url_continue=None
    ) -> HttpResponse:  # noqa: ANN001
        # The token waits in the operator's own session for one showing at the
        # token's own URL, so a reload or a shared link never shows it again.
        (_name, token) = request._homepot_secrets[0]
        request.session[_issued_session_key(obj.pk)] = token
        return HttpResponseRedirect(reverse("admin:devices_enrollmenttoken_issued", args=[obj.pk]))

    def get_urls(self) -> list:
        issued = path(
            "<path:object_id>/issued/",
            self.admin_site.admin_view(self.issued_view),
            name="devices_enrollmenttoken_issued",
        )
        return [issued, *super().get_urls()]

    def issued_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        enrollment = self.get_object(request, unquote(object_id))
        if enrollment is None or not self.has_view_permission(request, enrollment):
            raise Http404("No such enrollment token.")
        token = request.session.pop(_issued_session_key(enrollment.pk), None)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Enrollment token {enrollment}",
            "opts": self.model._meta,
            "enrollment": enrollment,
            "token": token,
            "register_command": token and _register_command(request, enrollment, token),
        }
        response = TemplateResponse(request, "homepot/enrollment_token_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        for enrollment in queryset:
            services.enrollment_token_revoke(actor=request.user, enrollment=enrollment)
        self.message_user(request, "Revoked the selected tokens.")


def _issued_session_key(pk: int) -> str:
    return f"homepot.enrollment_token_issued.{pk}"


def _register_command(request: HttpRequest, enrollment: EnrollmentToken, token: str) -> str:
    server_url = request.build_absolute_uri("/").rstrip("/")
    return (
        f"homepot-agent register --server {server_url}"
        f" --site {enrollment.site.public_id} --token {token}"
    )


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "device", "message"]
    list_filter = ["kind"]
    search_fields = ["device__public_id", "message"]
    list_select_related = ["device__site"]  # a device is shown with its site's name


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "target_type", "target_id"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor", "target_id"]


@admin.register(SshTarget)
class SshTargetAdmin(SshTargetAdminMixin, StrictObjectIdAdmin):
    pass  # writes go through devices.ssh.services, which audit them


@admin.register(SshCheck)
class SshCheckAdmin(SshCheckAdminMixin, AuditedAdmin):
    audit_name = "ssh_check"
