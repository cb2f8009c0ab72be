"""Alerts: server-side rules, the alert lifecycle, escalation to people, ack links and channels."""
