"""OpenAPI description of the device headers."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from devices.auth import API_KEY_HEADER, DEVICE_ID_HEADER


class DeviceKeyScheme(OpenApiAuthenticationExtension):
    target_class = "devices.auth.DeviceKeyAuthentication"
    name = ["DeviceId", "DeviceApiKey"]

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201 (drf-spectacular hook)
        return [
            {"type": "apiKey", "in": "header", "name": DEVICE_ID_HEADER},
            {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
        ]
