"""MQTT → TimescaleDB ingest: validate, dedupe, write in one transaction per batch, ack after commit."""
