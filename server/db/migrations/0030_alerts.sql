-- 0030 alerts: contacts by role and place, alerts with their lifecycle, the timeline (台账),
-- every notification attempt, and the outbox of commands to the edge.
--
-- Contacts
--   alert_contacts        people to notify. role caregiver: bound to meal points in
--                         alert_contact_points; village_officer: one village; township_leader: one
--                         township (the same townships/villages as auth, 0010). endpoints: the
--                         person's channels in order of preference, [{"channel", "address"}];
--                         quiet_hours false: this person wants non-urgent alerts at night too (gas
--                         and electric alerts ignore quiet hours for everybody). user_id links the
--                         contact to a login when there is one.
-- Alerts
--   alerts                one row per alert; at most one unresolved alert per (point, device,
--                         condition) (partial unique index). version grows with every write:
--                         the worker and the API both write, each with `WHERE version = expected`,
--                         and a writer that lost the race reloads the row and applies again.
--   alert_events          the timeline: opened, severity_changed, acknowledged, cleared, recurred,
--                         confirmed, resolved; append-only (UPDATE refused by a trigger).
--   alert_notifications   every send attempt, successful or not (the escalation planner's memory:
--                         a restarted worker carries on from these rows).
--   alert_commands        commands for the edge (ack_alarm) written in the same transaction as the
--                         acknowledgement; the worker publishes them and stamps sent_at.
--   alert_inapp_sessions  dashboard sessions with an open event stream (presence for the in-app
--                         channel: a message counts as delivered only if its person is looking).
-- Changes are announced with pg_notify('yangyi_alerts', json) for the API's event streams and
-- the worker (different processes).

CREATE TABLE alert_contacts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (btrim(name) <> ''),
    role        text NOT NULL CHECK (role IN ('caregiver', 'village_officer', 'township_leader')),
    township_id bigint REFERENCES townships (id),
    village_id  bigint REFERENCES villages (id),
    user_id     bigint REFERENCES auth_users (id) ON DELETE SET NULL,
    mobile      text,
    endpoints   jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(endpoints) = 'array'),
    quiet_hours boolean NOT NULL DEFAULT true,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_contacts_binding CHECK (
        (role = 'caregiver' AND township_id IS NULL AND village_id IS NULL)
        OR (role = 'village_officer' AND village_id IS NOT NULL AND township_id IS NULL)
        OR (role = 'township_leader' AND township_id IS NOT NULL AND village_id IS NULL))
);
CREATE INDEX alert_contacts_village ON alert_contacts (village_id) WHERE village_id IS NOT NULL;
CREATE INDEX alert_contacts_township ON alert_contacts (township_id) WHERE township_id IS NOT NULL;

CREATE TABLE alert_contact_points (
    contact_id bigint NOT NULL REFERENCES alert_contacts (id) ON DELETE CASCADE,
    point_id   text NOT NULL REFERENCES meal_points (id),
    PRIMARY KEY (contact_id, point_id)
);
CREATE INDEX alert_contact_points_point ON alert_contact_points (point_id);

CREATE TABLE alerts (
    id                  text PRIMARY KEY,
    point_id            text NOT NULL,
    device_id           text NOT NULL,
    condition           text NOT NULL,
    hazard              text NOT NULL,
    severity            text NOT NULL,
    peak_severity       text NOT NULL,
    state               text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    source              text NOT NULL,
    opened_at           timestamptz NOT NULL,
    last_seen           timestamptz NOT NULL,
    count               integer NOT NULL DEFAULT 1,
    last_value          double precision,
    unit                text,
    threshold           double precision,
    message             text NOT NULL DEFAULT '',
    active              boolean NOT NULL DEFAULT true,
    clear_pending_since timestamptz,
    cleared_at          timestamptz,
    ack_by              text,
    ack_at              timestamptz,
    ack_channel         text,
    confirmed_by        text,
    confirmed_at        timestamptz,
    confirm_note        text,
    resolved_at         timestamptz,
    resolved_by         text,
    previous_id         text,
    version             bigint NOT NULL DEFAULT 1,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alerts_one_active ON alerts (point_id, device_id, condition) WHERE state <> 'resolved';
CREATE INDEX alerts_open_state ON alerts (state) WHERE state <> 'resolved';
CREATE INDEX alerts_point_opened ON alerts (point_id, opened_at DESC);
CREATE INDEX alerts_opened ON alerts (opened_at DESC);

CREATE TABLE alert_events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id text NOT NULL REFERENCES alerts (id),
    time     timestamptz NOT NULL,
    kind     text NOT NULL,
    actor    text NOT NULL,
    channel  text,
    detail   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, time, id);
CREATE INDEX alert_events_time ON alert_events (time DESC);

CREATE FUNCTION alert_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_events is append-only';
END
$$;

CREATE TRIGGER alert_events_no_update BEFORE UPDATE ON alert_events
    FOR EACH ROW EXECUTE FUNCTION alert_events_append_only();

CREATE TABLE alert_notifications (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id  text NOT NULL REFERENCES alerts (id),
    person_id text NOT NULL,
    role      text NOT NULL,
    channel   text NOT NULL,
    address   text NOT NULL,
    kind      text NOT NULL,
    round     integer NOT NULL,
    attempt   integer NOT NULL,
    time      timestamptz NOT NULL,
    ok        boolean NOT NULL,
    status    integer,
    response  text,
    error     text
);
CREATE INDEX alert_notifications_alert ON alert_notifications (alert_id, time);
CREATE INDEX alert_notifications_person_time ON alert_notifications (person_id, time DESC);

CREATE TABLE alert_commands (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cmd_id     text NOT NULL UNIQUE,
    alert_id   text REFERENCES alerts (id),
    point_id   text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL,
    sent_at    timestamptz,
    tries      integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX alert_commands_pending ON alert_commands (created_at) WHERE sent_at IS NULL;

CREATE TABLE alert_inapp_sessions (
    session_id text PRIMARY KEY,
    person_id  text NOT NULL,
    seen_at    timestamptz NOT NULL
);
CREATE INDEX alert_inapp_sessions_person ON alert_inapp_sessions (person_id, seen_at DESC);
