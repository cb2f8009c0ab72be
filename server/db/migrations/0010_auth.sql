-- 0010 auth: places (county → township → village → meal point), users and roles, web sessions,
-- integration tokens, login failures (rate limiting) and the audit log.
--
-- Places
--   townships, villages  the county's units with ids; a deployment serves one county, so the county
--                        itself is implicit. Names are the keys the registry already writes into
--                        meal_points.township / meal_points.village (0001), so 0001 is unchanged:
--                        a trigger adds any new township/village name a point row mentions, and the
--                        view meal_point_places resolves each point to its ids (NULL when unplaced;
--                        an unplaced point is visible to county-wide roles only).
-- Identity
--   auth_users           people; role plus the binding the role needs (checked below); caregivers'
--                        meal points in auth_user_points. Passwords are argon2id encoded strings.
--   auth_tokens          integration bearer tokens: only SHA-256 of the secret is stored (the secret
--                        is 256 random bits, so a slow hash adds nothing); scoped like a role
--                        (points in auth_token_points), always expiring, revocable.
--   auth_sessions        server-side web sessions keyed by SHA-256 of the cookie value: logout and
--                        expiry end them here, whatever the browser keeps.
--   auth_login_failures  failed logins per account and per IP, read as a sliding window (rate limit).
--   audit_log            append-only record of privileged actions; UPDATE is refused by a trigger.

CREATE TABLE townships (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (btrim(name) <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE villages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    township_id bigint NOT NULL REFERENCES townships (id),
    name        text NOT NULL CHECK (btrim(name) <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (township_id, name)
);

INSERT INTO townships (name)
SELECT DISTINCT township FROM meal_points WHERE btrim(coalesce(township, '')) <> ''
ON CONFLICT (name) DO NOTHING;

INSERT INTO villages (township_id, name)
SELECT DISTINCT t.id, p.village
FROM meal_points p JOIN townships t ON t.name = p.township
WHERE btrim(coalesce(p.village, '')) <> ''
ON CONFLICT (township_id, name) DO NOTHING;

CREATE FUNCTION places_from_meal_point() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF btrim(coalesce(NEW.township, '')) <> '' THEN
        INSERT INTO townships (name) VALUES (NEW.township) ON CONFLICT (name) DO NOTHING;
        IF btrim(coalesce(NEW.village, '')) <> '' THEN
            INSERT INTO villages (township_id, name)
            SELECT id, NEW.village FROM townships WHERE name = NEW.township
            ON CONFLICT (township_id, name) DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER meal_points_places AFTER INSERT OR UPDATE OF township, village ON meal_points
    FOR EACH ROW EXECUTE FUNCTION places_from_meal_point();

CREATE VIEW meal_point_places AS
SELECT p.id AS point_id, t.id AS township_id, v.id AS village_id
FROM meal_points p
LEFT JOIN townships t ON t.name = p.township
LEFT JOIN villages v ON v.township_id = t.id AND v.name = p.village;

CREATE TABLE auth_users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username = lower(username) AND btrim(username) <> ''),
    display_name  text,
    password_hash text NOT NULL,
    role          text NOT NULL,
    township_id   bigint REFERENCES townships (id),
    village_id    bigint REFERENCES villages (id),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auth_users_binding CHECK (
        (role IN ('bureau_admin', 'bureau_viewer', 'caregiver') AND township_id IS NULL AND village_id IS NULL)
        OR (role = 'township_officer' AND township_id IS NOT NULL AND village_id IS NULL)
        OR (role = 'village_officer' AND village_id IS NOT NULL AND township_id IS NULL))
);

CREATE TABLE auth_user_points (
    user_id  bigint NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    point_id text NOT NULL REFERENCES meal_points (id),
    PRIMARY KEY (user_id, point_id)
);

CREATE TABLE auth_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL CHECK (btrim(name) <> ''),
    token_hash   bytea NOT NULL UNIQUE,
    role         text NOT NULL,
    township_id  bigint REFERENCES townships (id),
    village_id   bigint REFERENCES villages (id),
    created_by   bigint REFERENCES auth_users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CONSTRAINT auth_tokens_binding CHECK (
        (role IN ('bureau_admin', 'bureau_viewer', 'caregiver') AND township_id IS NULL AND village_id IS NULL)
        OR (role = 'township_officer' AND township_id IS NOT NULL AND village_id IS NULL)
        OR (role = 'village_officer' AND village_id IS NOT NULL AND township_id IS NULL))
);

CREATE TABLE auth_token_points (
    token_id bigint NOT NULL REFERENCES auth_tokens (id) ON DELETE CASCADE,
    point_id text NOT NULL REFERENCES meal_points (id),
    PRIMARY KEY (token_id, point_id)
);

CREATE TABLE auth_sessions (
    id_hash      bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ip           text,
    user_agent   text,
    revoked_at   timestamptz
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);
CREATE INDEX auth_sessions_expires ON auth_sessions (expires_at);

CREATE TABLE auth_login_failures (
    time     timestamptz NOT NULL,
    username text NOT NULL,
    ip       text
);
CREATE INDEX auth_login_failures_username ON auth_login_failures (username, time DESC);
CREATE INDEX auth_login_failures_ip ON auth_login_failures (ip, time DESC);

CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time          timestamptz NOT NULL,
    actor         text NOT NULL,
    actor_user_id bigint,
    action        text NOT NULL,
    target        text,
    ip            text,
    ok            boolean NOT NULL DEFAULT true,
    detail        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_time ON audit_log (time DESC);
CREATE INDEX audit_log_action_time ON audit_log (action, time DESC);
CREATE INDEX audit_log_actor_time ON audit_log (actor, time DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
