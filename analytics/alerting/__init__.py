"""Alerting: rules evaluated by beat over the latest values, alerts from firing to
resolved, silences.

- `evaluate`: one set-based evaluation round of every enabled rule.
- `services`: what operators do to alerts and silences (acknowledge, resolve,
  silence), and the built-in rules synced after migrate.
- `rules`: creating and changing rules (validation shared by the API and admin).
- `serializers`, `views`, `admin`: the API and the admin.

Notifications (channels, deliveries, email, signed webhooks) are in
analytics.notifications; a transition calls `notifications_enqueue` there.
"""
