"""Notification channels: one interface (send(notification) -> SendResult), one module per provider."""

from .base import Channel, HttpChannel, Notification, SendResult, send_safely

__all__ = ["Channel", "HttpChannel", "Notification", "SendResult", "send_safely"]
