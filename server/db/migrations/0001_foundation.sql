-- 0001 foundation: meal points, devices, the receipt ledger and the event hypertables.
--
-- Tables
--   meal_points        registry; auto_registered = created by ingest for an unknown point (review it)
--   devices            one row per (point, device): retained status (state, status_ts, heartbeat_s,
--                      role, software, detail) and last_seen (any message from it)
--   message_receipts   hypertable, one row per event message ever accepted; the UNIQUE key
--                      (point_id, device_id, seq, time) is THE dedup mechanism for every event kind:
--                      ingest inserts receipts ON CONFLICT DO NOTHING and writes payload rows only for
--                      the receipts that were new. TimescaleDB unique indexes must include the time
--                      column; the edge stores ts in its outbox, so a redelivery carries the same ts.
--   diner_events, telemetry, safety_events, count_events
--                      hypertables on the device's event time `time`; seq ties a row to its receipt
--   dead_letters       plain table: messages that failed validation, raw bytes kept for inspection
--
-- Chunk intervals, for the scale in MISSION.md (county: 300 points x 10 sensors; province: 10,000
-- points). The rule of thumb is that the chunks being written, with their indexes, fit in about a
-- quarter of memory, and that a day's or a week's query touches few chunks.
--   telemetry, message_receipts  1 day: one summary a minute per sensor is ~4 M rows/day per county
--                      and ~140 M per province; a day is the largest chunk that stays in memory at
--                      province scale and the unit retention drops.
--   count_events       7 days: one row a minute per camera, ~0.4 M/day per county.
--   diner_events       7 days: <= 150 diners x 3 meals x 300 points ~ 0.1 M/day per county; kept
--                      for ever (subsidy audit trail), so fewer, larger chunks keep planning cheap.
--   safety_events      30 days: only level transitions, a few per point per day.
--
-- Hypertables carry no foreign keys (they would cost a lookup per inserted row); ingest creates
-- the meal_points/devices rows itself.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE meal_points (
    id              text PRIMARY KEY,
    name            text,
    township        text,
    village         text,
    auto_registered boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    point_id     text NOT NULL REFERENCES meal_points (id),
    device_id    text NOT NULL,
    role         text,
    state        text,
    last_seen    timestamptz,
    status_ts    timestamptz,
    heartbeat_s  integer,
    software     text,
    detail       text,
    outbox_depth integer,
    PRIMARY KEY (point_id, device_id)
);

CREATE TABLE message_receipts (
    time         timestamptz NOT NULL,
    point_id     text NOT NULL,
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    channel      text NOT NULL,
    received_at  timestamptz NOT NULL,
    clock_synced boolean NOT NULL,
    CONSTRAINT message_receipts_key UNIQUE (point_id, device_id, seq, time)
);
SELECT create_hypertable('message_receipts', 'time', chunk_time_interval => interval '1 day',
                         create_default_indexes => false);

CREATE TABLE diner_events (
    time         timestamptz NOT NULL,
    point_id     text NOT NULL,
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    kind         text NOT NULL,
    method       text NOT NULL,
    card_id      text NOT NULL,
    meal         text,
    decision     text NOT NULL,
    elder_id     text,
    clock_synced boolean NOT NULL
);
SELECT create_hypertable('diner_events', 'time', chunk_time_interval => interval '7 days',
                         create_default_indexes => false);
CREATE INDEX diner_events_point_time ON diner_events (point_id, time DESC);

CREATE TABLE telemetry (
    time      timestamptz NOT NULL,
    point_id  text NOT NULL,
    device_id text NOT NULL,
    seq       bigint NOT NULL,
    channel   text NOT NULL,
    unit      text,
    value     double precision NOT NULL,
    vmin      double precision,
    vmean     double precision,
    vmax      double precision,
    n         integer,
    period_s  integer
);
SELECT create_hypertable('telemetry', 'time', chunk_time_interval => interval '1 day',
                         create_default_indexes => false);
-- Serves a point's recent readings (latest per device and channel within a look-back window).
-- Deliberately not (point, device, channel, time): measured here, COPY into the table with that
-- wider index ran at 0.32 M rows/s against 0.42 M rows/s with this one.
CREATE INDEX telemetry_point_time ON telemetry (point_id, time DESC);

CREATE TABLE safety_events (
    time         timestamptz NOT NULL,
    point_id     text NOT NULL,
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    channel      text NOT NULL,
    level        text NOT NULL,
    prev_level   text,
    rule         text NOT NULL,
    value        double precision,
    unit         text,
    threshold    double precision,
    latched      boolean NOT NULL,
    actions      text[] NOT NULL,
    message      text,
    clock_synced boolean NOT NULL
);
SELECT create_hypertable('safety_events', 'time', chunk_time_interval => interval '30 days',
                         create_default_indexes => false);
CREATE INDEX safety_events_point_time ON safety_events (point_id, time DESC);

CREATE TABLE count_events (
    time      timestamptz NOT NULL,
    point_id  text NOT NULL,
    device_id text NOT NULL,
    seq       bigint NOT NULL,
    period_s  integer NOT NULL,
    entries   integer NOT NULL,
    exits     integer NOT NULL,
    occupancy integer
);
SELECT create_hypertable('count_events', 'time', chunk_time_interval => interval '7 days',
                         create_default_indexes => false);
CREATE INDEX count_events_point_time ON count_events (point_id, time DESC);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    error       text
);
CREATE INDEX dead_letters_received_at ON dead_letters (received_at);
