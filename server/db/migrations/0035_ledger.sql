-- 0035 ledger: the safety ledger (安全台账) of routine inspections at meal points.
--
-- The plan's chain of checks: the caregiver's daily check (electricity, gas, food; meal samples
-- kept 48 h), the village safety officer's weekly check, the township's monthly patrol. Every
-- inspection belongs to one meal point and one period of its kind, in the county's local calendar:
--   period_start  daily: the day; weekly: the Monday of the ISO week; monthly: the 1st of the month
-- Tables
--   ledger_inspections       one row per inspection: who (principal and role as recorded), when
--                            (inspected_at, and recorded_at by the server: late entries show), and
--                            the sensor evidence of its period as computed when last read (evidence;
--                            kept because telemetry chunks are dropped after their retention)
--   ledger_inspection_items  items checked, pass/fail with a note
--   ledger_problems          problems found and their rectification: fixed at once, or by a deadline
--                            and later done (who, when, note)
--   ledger_meal_samples      meal samples (留样) taken at the daily check and their disposal
--   ledger_closures          days a meal point was closed (holidays): no daily check is due
-- Rows are never deleted by the application; corrections are new inspections.

CREATE TABLE ledger_inspections (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    point_id          text NOT NULL REFERENCES meal_points (id),
    kind              text NOT NULL CHECK (kind IN ('daily', 'weekly', 'monthly')),
    period_start      date NOT NULL,
    inspected_at      timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL,
    inspector         text NOT NULL,
    inspector_user_id bigint REFERENCES auth_users (id),
    inspector_name    text,
    inspector_role    text NOT NULL,
    note              text,
    evidence          jsonb,
    evidence_at       timestamptz,
    CONSTRAINT ledger_inspections_period CHECK (
        (kind = 'daily')
        OR (kind = 'weekly' AND extract(isodow FROM period_start) = 1)
        OR (kind = 'monthly' AND extract(day FROM period_start) = 1))
);
CREATE INDEX ledger_inspections_point_period ON ledger_inspections (point_id, period_start, kind);

CREATE TABLE ledger_inspection_items (
    inspection_id bigint NOT NULL REFERENCES ledger_inspections (id),
    position      integer NOT NULL CHECK (position >= 0),
    area          text NOT NULL,
    item          text NOT NULL CHECK (btrim(item) <> ''),
    passed        boolean NOT NULL,
    note          text,
    PRIMARY KEY (inspection_id, position)
);

CREATE TABLE ledger_problems (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inspection_id bigint NOT NULL REFERENCES ledger_inspections (id),
    point_id      text NOT NULL REFERENCES meal_points (id),
    item_position integer,
    description   text NOT NULL CHECK (btrim(description) <> ''),
    rectification text NOT NULL CHECK (rectification IN ('fixed_at_once', 'deadline')),
    deadline      date,
    done_at       timestamptz,
    done_by       text,
    done_note     text,
    CONSTRAINT ledger_problems_deadline CHECK (
        (rectification = 'fixed_at_once' AND deadline IS NULL AND done_at IS NOT NULL)
        OR (rectification = 'deadline' AND deadline IS NOT NULL))
);
CREATE INDEX ledger_problems_point ON ledger_problems (point_id, id);
CREATE INDEX ledger_problems_inspection ON ledger_problems (inspection_id);

CREATE TABLE ledger_meal_samples (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inspection_id bigint NOT NULL REFERENCES ledger_inspections (id),
    point_id      text NOT NULL REFERENCES meal_points (id),
    meal          text NOT NULL CHECK (meal IN ('breakfast', 'lunch', 'dinner')),
    dishes        text,
    taken_at      timestamptz NOT NULL,
    disposed_at   timestamptz,
    disposed_by   text,
    CONSTRAINT ledger_meal_samples_order CHECK (disposed_at IS NULL OR disposed_at >= taken_at)
);
CREATE INDEX ledger_meal_samples_point ON ledger_meal_samples (point_id, taken_at);

CREATE TABLE ledger_closures (
    point_id    text NOT NULL REFERENCES meal_points (id),
    day         date NOT NULL,
    reason      text NOT NULL CHECK (btrim(reason) <> ''),
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (point_id, day)
);
