-- 0040 subsidy: stored policy versions, settlement runs with their lines, exclusions, totals and flags,
-- sign-off snapshots (immutable, hash-checked), the month's ledger and its events, adjustments carried
-- into later months, staff service records, donations and the villages' public notices.
--
-- Policies
--   subsidy_policies      one row per policy version (server.subsidy.policy.SubsidyPolicy): the YAML
--                         text it was submitted in, its parsed canonical content and sha256, county
--                         name and time zone. Versions are immutable (UPDATE/DELETE refused): a change
--                         is a new version with a later effective_from. A signed month keeps the
--                         content of the versions it used inside its snapshot anyway.
-- Settlement
--   settlement_runs       one computation of a month. method 'pure' = server.subsidy.settlement.settle()
--                         (lines, exclusions, flags, content hash); 'sql' = the set-based path
--                         (server/subsidy/sql.py) for volume, which stores totals only.
--   settlement_lines / settlement_exclusions / settlement_totals / settlement_anomalies
--                         a run's results, one row per subsidised tap, excluded tap, unit total and
--                         flag. Point ids, township ids and village ids are kept on each row so scope
--                         filters apply without joins.
--   settlement_months     the month's ledger: open | signed | reopened, the revision signed last.
--   settlement_snapshots  the signed month: the canonical JSON text exactly as hashed, its sha256 (a
--                         CHECK recomputes it), the run it came from. Append-only: UPDATE and DELETE
--                         are refused by a trigger. While a month is signed no new run may be stored
--                         for it, and the signed run's rows may not change.
--   settlement_events     append-only sign / reopen trail with the reason (also in audit_log).
--   settlement_adjustments  corrections to a signed month found later, payable in `into_month`.
-- Public notice
--   service_records       助洁 (cleaning) / 助医 (medical) services staff recorded for an elder.
--   donations             the honour roll: donor, money or goods, date, village.
--   subsidy_notices       the drafted notice per (month, village): the HTML as drafted, its hash,
--                         when drafted, when published (NULL until then).

CREATE TABLE subsidy_policies (
    version        text PRIMARY KEY CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    effective_from date NOT NULL UNIQUE,
    county         text NOT NULL CHECK (btrim(county) <> ''),
    timezone       text NOT NULL,
    source_yaml    text NOT NULL,
    content        jsonb NOT NULL,
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    added_by       text NOT NULL,
    added_at       timestamptz NOT NULL
);

CREATE FUNCTION subsidy_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER subsidy_policies_immutable BEFORE UPDATE OR DELETE ON subsidy_policies
    FOR EACH ROW EXECUTE FUNCTION subsidy_refuse_change();

CREATE TABLE settlement_months (
    month      date PRIMARY KEY CHECK (extract(day FROM month) = 1),
    state      text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'signed', 'reopened')),
    revision   integer NOT NULL DEFAULT 0 CHECK (revision >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE settlement_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    month        date NOT NULL CHECK (extract(day FROM month) = 1),
    method       text NOT NULL CHECK (method IN ('pure', 'sql')),
    computed_at  timestamptz NOT NULL,
    computed_by  text NOT NULL,
    seconds      double precision,
    content_hash text CHECK (content_hash IS NULL OR content_hash ~ '^[0-9a-f]{64}$'),
    taps         bigint NOT NULL,
    meals        bigint NOT NULL,
    amount       numeric(16, 2) NOT NULL,
    adjustments  numeric(16, 2) NOT NULL DEFAULT 0,
    excluded     bigint NOT NULL,
    anomalies    integer NOT NULL DEFAULT 0,
    policies     jsonb NOT NULL DEFAULT '[]'::jsonb,
    inputs       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX settlement_runs_month ON settlement_runs (month, id DESC);

CREATE TABLE settlement_lines (
    run_id         bigint NOT NULL REFERENCES settlement_runs (id) ON DELETE CASCADE,
    point_id       text NOT NULL,
    device_id      text NOT NULL,
    seq            bigint NOT NULL,
    tap_time       timestamptz NOT NULL,
    card_id        text NOT NULL,
    kind           text NOT NULL,
    elder_id       text NOT NULL,
    day            date NOT NULL,
    meal           text NOT NULL,
    category       text NOT NULL,
    amount         numeric(10, 2) NOT NULL,
    policy_version text NOT NULL,
    township_id    bigint,
    village_id     bigint
);
CREATE INDEX settlement_lines_run_point ON settlement_lines (run_id, point_id);

CREATE TABLE settlement_exclusions (
    run_id      bigint NOT NULL REFERENCES settlement_runs (id) ON DELETE CASCADE,
    point_id    text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    tap_time    timestamptz NOT NULL,
    card_id     text NOT NULL,
    kind        text NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL DEFAULT '',
    elder_id    text,
    day         date,
    meal        text,
    township_id bigint,
    village_id  bigint
);
CREATE INDEX settlement_exclusions_run_point ON settlement_exclusions (run_id, point_id);

CREATE TABLE settlement_totals (
    run_id      bigint NOT NULL REFERENCES settlement_runs (id) ON DELETE CASCADE,
    level       text NOT NULL CHECK (level IN ('point', 'village', 'township', 'county')),
    unit_id     text NOT NULL,
    name        text NOT NULL DEFAULT '',
    township_id bigint,
    village_id  bigint,
    meals       bigint NOT NULL,
    amount      numeric(16, 2) NOT NULL,
    adjustments numeric(16, 2) NOT NULL,
    taps        bigint NOT NULL,
    excluded    jsonb NOT NULL,
    by_category jsonb NOT NULL,
    PRIMARY KEY (run_id, level, unit_id)
);

CREATE TABLE settlement_anomalies (
    run_id   bigint NOT NULL REFERENCES settlement_runs (id) ON DELETE CASCADE,
    kind     text NOT NULL,
    point_id text NOT NULL,
    day      date,
    meal     text,
    card_id  text,
    detail   text NOT NULL,
    figures  jsonb NOT NULL
);
CREATE INDEX settlement_anomalies_run ON settlement_anomalies (run_id, point_id);

CREATE TABLE settlement_snapshots (
    month        date NOT NULL REFERENCES settlement_months (month),
    revision     integer NOT NULL CHECK (revision >= 1),
    run_id       bigint NOT NULL REFERENCES settlement_runs (id),
    content      text NOT NULL,
    content_hash text NOT NULL,
    signed_by    text NOT NULL,
    signed_at    timestamptz NOT NULL,
    PRIMARY KEY (month, revision),
    CONSTRAINT settlement_snapshots_hash CHECK (encode(sha256(convert_to(content, 'UTF8')), 'hex') = content_hash)
);

CREATE TRIGGER settlement_snapshots_immutable BEFORE UPDATE OR DELETE ON settlement_snapshots
    FOR EACH ROW EXECUTE FUNCTION subsidy_refuse_change();

CREATE TABLE settlement_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    month        date NOT NULL REFERENCES settlement_months (month),
    action       text NOT NULL CHECK (action IN ('sign', 'reopen')),
    revision     integer NOT NULL,
    content_hash text NOT NULL,
    actor        text NOT NULL,
    at           timestamptz NOT NULL,
    reason       text NOT NULL DEFAULT '',
    CHECK (action <> 'reopen' OR length(btrim(reason)) >= 5)
);

CREATE TRIGGER settlement_events_immutable BEFORE UPDATE OR DELETE ON settlement_events
    FOR EACH ROW EXECUTE FUNCTION subsidy_refuse_change();

-- A signed month is locked: no new run for it, and the rows of a signed run never change.
CREATE FUNCTION settlement_refuse_when_signed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    m date;
BEGIN
    IF TG_TABLE_NAME = 'settlement_runs' THEN
        m := CASE WHEN TG_OP = 'DELETE' THEN OLD.month ELSE NEW.month END;
        IF EXISTS (SELECT 1 FROM settlement_months WHERE month = m AND state = 'signed') THEN
            RAISE EXCEPTION 'settlement month % is signed; reopen it first', m
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF TG_OP <> 'INSERT' AND EXISTS (SELECT 1 FROM settlement_snapshots WHERE run_id = OLD.id) THEN
            RAISE EXCEPTION 'settlement run % was signed and cannot change', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM settlement_snapshots WHERE run_id = OLD.run_id) THEN
        RAISE EXCEPTION 'settlement run % was signed and cannot change', OLD.run_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER settlement_runs_lock BEFORE INSERT OR UPDATE OR DELETE ON settlement_runs
    FOR EACH ROW EXECUTE FUNCTION settlement_refuse_when_signed();
CREATE TRIGGER settlement_lines_lock BEFORE UPDATE OR DELETE ON settlement_lines
    FOR EACH ROW EXECUTE FUNCTION settlement_refuse_when_signed();
CREATE TRIGGER settlement_exclusions_lock BEFORE UPDATE OR DELETE ON settlement_exclusions
    FOR EACH ROW EXECUTE FUNCTION settlement_refuse_when_signed();
CREATE TRIGGER settlement_totals_lock BEFORE UPDATE OR DELETE ON settlement_totals
    FOR EACH ROW EXECUTE FUNCTION settlement_refuse_when_signed();

CREATE TABLE settlement_adjustments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin_month    date NOT NULL,
    origin_revision integer NOT NULL,
    into_month      date NOT NULL CHECK (into_month > origin_month),
    point_id        text NOT NULL,
    device_id       text NOT NULL,
    seq             bigint NOT NULL,
    tap_time        timestamptz NOT NULL,
    elder_id        text,
    day             date,
    meal            text,
    category_before text,
    category_after  text,
    amount_before   numeric(10, 2) NOT NULL,
    amount_after    numeric(10, 2) NOT NULL,
    note            text NOT NULL,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    UNIQUE (origin_month, origin_revision, point_id, device_id, seq, tap_time)
);
CREATE INDEX settlement_adjustments_into ON settlement_adjustments (into_month);

CREATE TABLE service_records (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    day         date NOT NULL,
    elder_id    text NOT NULL REFERENCES elders (id),
    village_id  bigint NOT NULL REFERENCES villages (id),
    service     text NOT NULL CHECK (service IN ('cleaning', 'medical')),
    note        text,
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX service_records_village_day ON service_records (village_id, day);

CREATE TABLE donations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    donor        text NOT NULL CHECK (btrim(donor) <> '' AND length(donor) <= 100),
    donor_kind   text NOT NULL CHECK (donor_kind IN ('person', 'organisation')),
    kind         text NOT NULL CHECK (kind IN ('money', 'goods')),
    day          date NOT NULL,
    village_id   bigint NOT NULL REFERENCES villages (id),
    amount       numeric(12, 2) CHECK (amount IS NULL OR amount > 0),
    goods        text CHECK (goods IS NULL OR length(goods) <= 200),
    publish_name boolean NOT NULL DEFAULT false,
    anonymous    boolean NOT NULL DEFAULT false,
    recorded_by  text NOT NULL,
    recorded_at  timestamptz NOT NULL,
    CHECK ((kind = 'money') = (amount IS NOT NULL)),
    CHECK (kind <> 'goods' OR btrim(coalesce(goods, '')) <> '')
);
CREATE INDEX donations_village_day ON donations (village_id, day);

CREATE TABLE subsidy_notices (
    month        date NOT NULL CHECK (extract(day FROM month) = 1),
    village_id   bigint NOT NULL REFERENCES villages (id),
    run_id       bigint REFERENCES settlement_runs (id),
    html         text NOT NULL,
    html_sha256  text NOT NULL,
    drafted_at   timestamptz NOT NULL,
    due_on       date NOT NULL,
    published_on date,
    published_by text,
    PRIMARY KEY (month, village_id)
);
