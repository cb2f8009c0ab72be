-- 0020 elders and cards: the people meal subsidies are for, their categories, the cards they tap,
-- the roster each meal point's agent holds, and delivered meals recorded through the API.
--
-- Tables (issue 3 writes them through the API; issue 6 imports the bureau's sheets into the same
-- tables and settles from them — server/subsidy maps them one to one, see the notes per table)
--   elders            one row per person. id is text: the contract's elder_id (server-made ids are
--                     'E' + 8 digits; an import may bring the bureau's own). id_number is the
--                     GB 11643 resident ID number, validated in Python (firmware_bridge.residentid)
--                     and unique; birth_date and sex are DERIVED from it (kept as columns so SQL can
--                     compute ages; a CHECK ties birth_date to the number). hukou_local false with a
--                     resident_since date = long-term resident (treated as local by the policy).
--                     status active | moved | deceased; status_date = first day it applies (NULL
--                     only while active). village_id: the village (行政村/社区) that answers for the
--                     elder; home_point_id: the meal point the elder usually eats at.
--                     → server.subsidy.eligibility.Elder (hukou_local, resident_since, status,
--                       status_date, categories from elder_categories)
--   elder_categories  child table: a category (server.subsidy.policy.Category values) with its
--                     evidence (证明材料, free text: document number, certificate) and an inclusive
--                     validity range. Rows are never updated in place to change meaning: end one
--                     (valid_to) and add another, so a signed month keeps its inputs.
--                     → CategoryGrant(category, valid_from, evidence, valid_to)
--   cards             one row per BINDING of a card to an elder (a card bound twice over time has two
--                     rows). card_id is canonical (firmware_bridge.cardid: EM:…, UID:…; an elder's
--                     resident ID card ID:<number> is implicit and never stored here).
--                     The binding covers [bound_from, bound_to): while it covers a tap, the tap is
--                     the elder's. state active | lost (挂失) | replaced (补办: a new card took over)
--                     with state_since = when that happened; taps on a lost/replaced card after
--                     state_since are attributed to the elder but earn nothing (CARD_LOST). bound_to
--                     is set when the card is RELEASED (handed back to stock; it may then be bound to
--                     someone else). Invariants enforced here: at most one active unreleased card per
--                     elder; at most one unreleased binding per card; no two bindings of one card
--                     overlap in time (GiST exclusion).
--                     → server.subsidy.records.CardBinding(card_id, elder_id, bound_from, bound_to,
--                       state, state_since)
--   rosters           per meal point: the version, content hash and time of the roster last built
--                     for it, and the version last confirmed published (retained) to the broker.
--                     Versions only move forward: max(previous + 1, unix milliseconds), so even a
--                     restored database never issues a version an agent already holds.
--   server_devices_seq  seq of diner events the server itself creates (API deliveries, device
--                     'api-delivery'): one sequence for all points is still unique per
--                     (point, device, seq), which is the dedup key.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE SEQUENCE elder_number_seq;

CREATE TABLE elders (
    id             text PRIMARY KEY DEFAULT 'E' || lpad(nextval('elder_number_seq')::text, 8, '0')
                   CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name           text NOT NULL CHECK (btrim(name) <> '' AND length(name) <= 64),
    id_number      text NOT NULL UNIQUE CHECK (id_number ~ '^[0-9]{17}[0-9X]$'),
    birth_date     date NOT NULL CHECK (to_char(birth_date, 'YYYYMMDD') = substr(id_number, 7, 8)),
    sex            text NOT NULL CHECK (sex IN ('male', 'female')),
    phone          text CHECK (phone IS NULL OR phone ~ '^\+?[0-9][0-9 -]{4,19}$'),
    address        text CHECK (address IS NULL OR length(address) <= 200),
    hukou_local    boolean NOT NULL,
    resident_since date,
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'moved', 'deceased')),
    status_date    date,
    village_id     bigint REFERENCES villages (id),
    home_point_id  text REFERENCES meal_points (id),
    note           text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'active') = (status_date IS NULL)),
    CHECK (NOT hukou_local OR resident_since IS NULL)
);
CREATE INDEX elders_village ON elders (village_id);
CREATE INDEX elders_home_point ON elders (home_point_id);

CREATE TABLE elder_categories (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    elder_id   text NOT NULL REFERENCES elders (id),
    category   text NOT NULL CHECK (category IN ('tekun', 'dibao', 'severe_disability', 'disabled',
                                                 'dibao_edge', 'family_planning', 'youfu',
                                                 'advanced_age', 'empty_nest', 'general')),
    evidence   text NOT NULL CHECK (btrim(evidence) <> ''),
    valid_from date NOT NULL,
    valid_to   date CHECK (valid_to IS NULL OR valid_to >= valid_from),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX elder_categories_elder ON elder_categories (elder_id);

CREATE TABLE cards (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card_id     text NOT NULL
                CHECK (card_id ~ '^(EM:[0-9A-F]{10}|UID:([0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{20}))$'),
    elder_id    text NOT NULL REFERENCES elders (id),
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'lost', 'replaced')),
    state_since timestamptz,
    bound_from  timestamptz NOT NULL,
    bound_to    timestamptz,
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'active') = (state_since IS NULL)),
    CHECK (state_since IS NULL OR state_since >= bound_from),
    CHECK (bound_to IS NULL OR bound_to > bound_from),
    CONSTRAINT cards_no_overlap EXCLUDE USING gist (card_id WITH =, tstzrange(bound_from, bound_to) WITH &&)
);
CREATE UNIQUE INDEX cards_one_active_per_elder ON cards (elder_id) WHERE state = 'active' AND bound_to IS NULL;
CREATE UNIQUE INDEX cards_one_open_binding ON cards (card_id) WHERE bound_to IS NULL;
CREATE INDEX cards_elder ON cards (elder_id);

CREATE TABLE rosters (
    point_id          text PRIMARY KEY REFERENCES meal_points (id),
    version           bigint NOT NULL CHECK (version >= 0),
    content_hash      text NOT NULL,
    entries           integer NOT NULL,
    built_at          timestamptz NOT NULL,
    published_version bigint,
    published_at      timestamptz
);

CREATE SEQUENCE server_diner_seq;
