"""The admin of SSH targets and checks, and the SSH panel of a device's page.

The admin classes are mixins that devices/admin.py registers on its own base
classes (strict object ids, the audit trail): this module cannot import
devices.admin, which imports it. Every write goes through devices.ssh.services,
as the API's do, so both audit the same way.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from devices.admin_panels import device_panel_register
from devices.models import (
    RESERVED_DEVICE_IDS,
    Device,
    Site,
    SshCheck,
    SshTarget,
    SshTargetCheck,
    device_id_validator,
)
from devices.ssh import runner, services
from devices.ssh.breaker import circuit_state
from homepot.errors import ServiceError

LastStatus = SshTarget.LastStatus
# Readable at a glance: green ok, red failures, orange a circuit holding back.
STATUS_COLOURS = {
    LastStatus.OK: "#2e7d32",
    LastStatus.FAILED: "#c62828",
    LastStatus.HOST_KEY_MISMATCH: "#c62828",
    LastStatus.CIRCUIT_OPEN: "#ef6c00",
    LastStatus.NEVER: "#757575",
}
CHANGE_PERMISSION = "devices.change_sshtarget"


def ssh_address(target: SshTarget) -> str:
    return f"{target.username}@{target.host}:{target.port}"


def status_badge(target: SshTarget) -> SafeString:
    return format_html(
        '<span class="homepot-ssh-status" data-status="{}" style="background:{};color:#fff;'
        'padding:1px 6px;border-radius:3px;white-space:nowrap">{}</span>',
        target.last_status or "never",
        STATUS_COLOURS[LastStatus(target.last_status)],
        target.get_last_status_display(),
    )


# --- Forms ------------------------------------------------------------------------------


class SshTargetForm(forms.ModelForm):
    """The connection and schedule of a target, validated as the API validates them."""

    port = forms.IntegerField(min_value=1, max_value=65535, initial=22)
    interval_seconds = forms.IntegerField(
        min_value=services.INTERVAL_MIN_SECONDS,
        max_value=services.INTERVAL_MAX_SECONDS,
        initial=60,
        help_text="How often its checks run, unless a check has its own interval.",
    )

    class Meta:
        model = SshTarget
        fields = services.SETTINGS_FIELDS
        widgets = {"host_key": forms.Textarea(attrs={"rows": 3, "cols": 80})}
        help_texts = {
            "host_key": "OpenSSH format, as `ssh-keyscan -t ed25519 <host>` prints it. "
            "Empty: every check fails and reports the key the host offers, to accept here.",
        }

    def clean_host(self) -> str:
        host = self.cleaned_data["host"]
        services.ssh_host_validate(host)
        return host

    def clean_host_key(self) -> str:
        return services.host_key_normalise(self.cleaned_data["host_key"])

    def board_site(self) -> Site | None:
        return self.instance.device.site

    def clean(self) -> dict:
        cleaned = super().clean()
        site = self.board_site()
        if site is not None and "powered_by" in cleaned:
            board = self.instance.device if self.instance.pk else None
            try:
                services.powered_by_validate(
                    site=site, board=board, powered_by=cleaned["powered_by"]
                )
            except ServiceError as exc:
                self.add_error("powered_by", exc.message)
        return cleaned


class SshTargetAddForm(SshTargetForm):
    """Creates the device too: its id, name and site."""

    device_id = forms.CharField(label="device id", max_length=64, validators=[device_id_validator])
    name = forms.CharField(max_length=200)
    site = forms.ModelChoiceField(queryset=Site.objects.all())
    initial_checks = forms.ModelMultipleChoiceField(
        queryset=SshCheck.objects.all(),
        required=False,
        label="checks",
        widget=forms.CheckboxSelectMultiple,
        help_text="Each check's own interval can be set on the target's page.",
    )

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 (Django form)
        super().__init__(*args, **kwargs)
        self.fields["initial_checks"].initial = list(
            SshCheck.objects.filter(builtin=True).values_list("pk", flat=True)
        )

    def clean_device_id(self) -> str:
        device_id = self.cleaned_data["device_id"]
        if device_id.lower() in RESERVED_DEVICE_IDS:
            raise ValidationError(f"{device_id!r} is reserved.")
        if Device.objects.filter(public_id=device_id).exists():
            raise ValidationError(f"Device {device_id!r} already exists.")
        return device_id

    def board_site(self) -> Site | None:
        return self.cleaned_data.get("site")


class SshTargetCheckFormSet(BaseInlineFormSet):
    def check_choices(self) -> list[services.CheckChoice]:
        """The checks the formset leaves the target with."""
        return [
            services.CheckChoice(
                form.cleaned_data["ssh_check"], form.cleaned_data["interval_seconds"]
            )
            for form in self.forms
            if form.cleaned_data.get("ssh_check") and not form.cleaned_data.get("DELETE")
        ]


class SshTargetCheckForm(forms.ModelForm):
    interval_seconds = forms.IntegerField(
        min_value=services.INTERVAL_MIN_SECONDS,
        max_value=services.INTERVAL_MAX_SECONDS,
        required=False,
        help_text="Empty: the target's interval.",
    )

    class Meta:
        model = SshTargetCheck
        fields = ["ssh_check", "interval_seconds"]


class SshTargetCheckInline(admin.TabularInline):
    """The checks of a target with their own intervals and latest outcomes."""

    model = SshTargetCheck
    form = SshTargetCheckForm
    formset = SshTargetCheckFormSet
    fields = [
        "ssh_check",
        "interval_seconds",
        "effective_interval_seconds",
        "next_run_at",
        "last_run_at",
        "last_status",
        "last_error",
    ]
    readonly_fields = fields[2:]
    extra = 0
    verbose_name_plural = "checks"


# --- SSH targets ------------------------------------------------------------------------


class SshTargetAdminMixin:
    """For a ModelAdmin of SshTarget."""

    list_display = [
        "device",
        "address",
        "status",
        "circuit",
        "last_check_at",
        "consecutive_failures",
        "enabled",
    ]
    list_filter = ["last_status", "enabled", "device__site"]
    list_select_related = ["device__site"]
    search_fields = ["device__public_id", "device__name", "host"]
    inlines = [SshTargetCheckInline]
    change_form_template = "admin/devices/ssh/target_change_form.html"
    outcome_fields = [
        "status",
        "circuit",
        "last_check_at",
        "last_error",
        "consecutive_failures",
        "circuit_opened_at",
        "offered_host_key_fingerprint",
        "offered_host_key_at",
    ]
    readonly_fields = ["device_link", "host_key_fingerprint", *outcome_fields]

    def get_form(self, request: HttpRequest, obj: SshTarget | None = None, **kwargs):  # noqa: ANN003, ANN201
        kwargs["form"] = SshTargetForm if obj else SshTargetAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: SshTarget | None = None) -> list:
        if obj is None:
            return [
                ("Device", {"fields": ["device_id", "name", "site"]}),
                ("Connection", {"fields": ["host", "port", "username", "host_key", "via"]}),
                (
                    "Schedule",
                    {"fields": ["interval_seconds", "initial_checks", "enabled", "powered_by"]},
                ),
            ]
        return [
            (None, {"fields": ["device_link"]}),
            (
                "Connection",
                {"fields": ["host", "port", "username", "host_key", "host_key_fingerprint", "via"]},
            ),
            ("Schedule", {"fields": ["interval_seconds", "enabled", "powered_by"]}),
            ("Latest outcome", {"fields": self.outcome_fields}),
        ]

    def get_inline_instances(self, request: HttpRequest, obj: SshTarget | None = None) -> list:
        # A new target's checks are chosen on the add form; their intervals after.
        return super().get_inline_instances(request, obj) if obj else []

    def has_delete_permission(self, request: HttpRequest, obj: SshTarget | None = None) -> bool:
        # Deleting a target decommissions its device.
        return super().has_delete_permission(request, obj) and request.user.has_perm(
            "devices.decommission"
        )

    # -- columns and read-only fields --

    @admin.display(description="address")
    def address(self, target: SshTarget) -> str:
        return ssh_address(target)

    @admin.display(description="last status", ordering="last_status")
    def status(self, target: SshTarget) -> SafeString:
        return status_badge(target)

    @admin.display(description="circuit")
    def circuit(self, target: SshTarget) -> str:
        return circuit_state(target, timezone.now()).value

    @admin.display(description="device")
    def device_link(self, target: SshTarget) -> SafeString:
        url = reverse("admin:devices_device_change", args=[target.device_id])
        return format_html('<a href="{}">{}</a>', url, target.device)

    @admin.display(description="host key fingerprint")
    def host_key_fingerprint(self, target: SshTarget) -> str:
        return services.fingerprint_of(target.host_key) or "(none pinned)"

    @admin.display(description="offered host key")
    def offered_host_key_fingerprint(self, target: SshTarget) -> str:
        return services.fingerprint_of(target.offered_host_key) or "-"

    # -- writes: through the services --

    def save_model(self, request: HttpRequest, obj: SshTarget, form, change: bool) -> None:  # noqa: ANN001
        if change:
            return  # save_related applies the form and the checks in one service call
        data = form.cleaned_data
        target = services.ssh_target_create(
            actor=request.user,
            public_id=data["device_id"],
            name=data["name"],
            site=data["site"],
            checks=[services.CheckChoice(check) for check in data["initial_checks"]],
            **{name: data[name] for name in SshTargetForm.Meta.fields},
        )
        obj.pk, obj.device = target.pk, target.device

    def response_post_save_add(self, request: HttpRequest, obj: SshTarget) -> HttpResponse:
        # On to the new target's page: its checks' intervals, and "Test connection".
        return HttpResponseRedirect(reverse("admin:devices_sshtarget_change", args=[obj.pk]))

    def save_related(self, request: HttpRequest, form, formsets: list, change: bool) -> None:  # noqa: ANN001
        if not change:
            return
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        for formset in formsets:
            formset.save(commit=False)  # nothing saved: sets what the change message reads
            if isinstance(formset, SshTargetCheckFormSet) and formset.has_changed():
                changes["checks"] = formset.check_choices()
        services.ssh_target_update(actor=request.user, target=form.instance, changes=changes)

    def delete_model(self, request: HttpRequest, obj: SshTarget) -> None:
        services.ssh_target_delete(actor=request.user, target=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        with transaction.atomic():
            for target in queryset.select_related("device"):
                services.ssh_target_delete(actor=request.user, target=target)

    # -- test connection, accept the offered host key --

    def get_urls(self) -> list:
        def view(function):  # noqa: ANN001, ANN202
            return self.admin_site.admin_view(function)

        return [
            path(
                "<path:object_id>/test-connection/",
                view(self.test_connection_view),
                name="devices_sshtarget_test_connection",
            ),
            path(
                "<path:object_id>/accept-host-key/",
                view(self.accept_host_key_view),
                name="devices_sshtarget_accept_host_key",
            ),
            *super().get_urls(),
        ]

    def _target_to_change(self, request: HttpRequest, object_id: str) -> SshTarget:
        target = self.get_object(request, object_id)
        if target is None:
            raise Http404(f"No SSH target with id {object_id!r}.")
        if not self.has_change_permission(request, target):
            raise PermissionDenied
        return target

    def test_connection_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(self._test_connection)(request, object_id)

    def _test_connection(self, request: HttpRequest, object_id: str) -> HttpResponse:
        target = self._target_to_change(request, object_id)
        change_url = reverse("admin:devices_sshtarget_change", args=[target.pk])
        try:
            outcome = runner.ssh_target_check_now(target=target, actor=request.user)
        except ServiceError as exc:  # no session slot came free in time
            messages.error(request, f"Connection not tested: {exc.message}")
            return HttpResponseRedirect(change_url)
        target.refresh_from_db()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Test connection: {target.device.public_id}",
            "opts": self.model._meta,
            "target": target,
            "status_badge": status_badge(target),
            "circuit": circuit_state(target, timezone.now()).value,
            "outcome": outcome,
            "accept_url": _accept_url(target) if outcome.offered_fingerprint else "",
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/devices/ssh/check_result.html", context)

    def accept_host_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the offered key's fingerprint beside the pinned one, to confirm.
        POST: pin it, if it is still the key the operator confirmed."""
        target = self._target_to_change(request, object_id)
        change_url = reverse("admin:devices_sshtarget_change", args=[target.pk])
        if request.method == "POST":
            try:
                services.ssh_target_host_key_accept(
                    actor=request.user,
                    target=target,
                    fingerprint=request.POST.get("fingerprint", "")[:100],
                )
            except ServiceError as exc:
                messages.error(request, f"Host key not accepted: {exc.message}")
            else:
                messages.success(request, "Host key accepted; the checks are due now.")
            return HttpResponseRedirect(change_url)
        if not target.offered_host_key:
            messages.warning(request, "The host has offered no key to accept.")
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Accept the host key of {target.device.public_id}?",
            "opts": self.model._meta,
            "target": target,
            "pinned_fingerprint": services.fingerprint_of(target.host_key),
            "offered_fingerprint": services.fingerprint_of(target.offered_host_key),
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/devices/ssh/accept_host_key.html", context)


def _accept_url(target: SshTarget) -> str:
    return reverse("admin:devices_sshtarget_accept_host_key", args=[target.pk])


# --- SSH checks -------------------------------------------------------------------------


class SshCheckForm(forms.ModelForm):
    timeout_seconds = forms.IntegerField(
        min_value=1, max_value=services.CHECK_TIMEOUT_MAX_SECONDS, initial=10
    )

    class Meta:
        model = SshCheck
        fields = ["name", "description", "command", "parser", "metric_prefix", "timeout_seconds"]

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 (Django form)
        super().__init__(*args, **kwargs)
        validators = {
            "command": services.check_command_validator,
            "metric_prefix": services.metric_prefix_validator,
        }
        for name, validator in validators.items():
            if name in self.fields:  # not for a built-in check, whose are read-only
                self.fields[name].validators.append(validator)
        if "parser" in self.fields:
            self.fields["parser"].choices = [(p.value, p.label) for p in services.OPERATOR_PARSERS]


class SshCheckAdminMixin:
    """For a ModelAdmin of SshCheck: built-in checks keep their command and parser."""

    form = SshCheckForm
    list_display = ["name", "description", "parser", "metric_prefix", "timeout_seconds", "builtin"]
    list_filter = ["builtin", "parser"]
    search_fields = ["name", "description", "command"]
    builtin_fields = ["name", "command", "parser", "metric_prefix", "builtin"]

    def get_readonly_fields(self, request: HttpRequest, obj: SshCheck | None = None) -> list[str]:
        return self.builtin_fields if obj is not None and obj.builtin else ["builtin"]

    def has_delete_permission(self, request: HttpRequest, obj: SshCheck | None = None) -> bool:
        if obj is not None and obj.builtin:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: SshCheck, form, change: bool) -> None:  # noqa: ANN001
        if change:
            super().save_model(request, obj, form, change)
            return
        check = services.ssh_check_create(actor=request.user, **form.cleaned_data)
        obj.pk = check.pk


# --- The SSH panel of a device's page ----------------------------------------------------


def device_ssh_context(request: HttpRequest, device: Device) -> dict:
    """A target's status on its device's page; a host key mismatch with the
    offered fingerprint, and a way to accept it, in plain view."""
    target = (
        SshTarget.objects.filter(device=device).prefetch_related("target_checks__ssh_check").first()
    )
    if target is None:
        return {"target": None}
    offered = services.fingerprint_of(target.offered_host_key)
    return {
        "target": target,
        "status_badge": status_badge(target),
        "circuit": circuit_state(target, timezone.now()).value,
        "address": ssh_address(target),
        "pinned_fingerprint": services.fingerprint_of(target.host_key),
        "offered_fingerprint": offered,
        "mismatch": target.last_status == LastStatus.HOST_KEY_MISMATCH,
        "target_url": reverse("admin:devices_sshtarget_change", args=[target.pk]),
        "accept_url": _accept_url(target)
        if offered and request.user.has_perm(CHANGE_PERMISSION)
        else "",
    }


device_panel_register(
    name="ssh",
    template="admin/devices/ssh/device_ssh_panel.html",
    context=device_ssh_context,
    permission="devices.view_sshtarget",
)
