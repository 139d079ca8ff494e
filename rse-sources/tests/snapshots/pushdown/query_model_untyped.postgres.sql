-- create_syncs_table
CREATE TABLE IF NOT EXISTS "Rse State"."rse_pushdown_syncs" (sync_id text NOT NULL PRIMARY KEY, hash_table text NOT NULL UNIQUE, epoch text);

-- register_sync
-- binds: sync_id: text; hash_table: text
INSERT INTO "Rse State"."rse_pushdown_syncs" (sync_id, hash_table) VALUES ($1, $2) ON CONFLICT (sync_id) DO NOTHING;

-- create_hash_table
CREATE TABLE IF NOT EXISTS "Rse State"."hashes" WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02) AS SELECT m."Region", m."we""ird id", NULL::bigint AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS "hashes_key" ON "Rse State"."hashes" ("Region", "we""ird id");

-- read_epoch
-- binds: sync_id: text
SELECT epoch FROM "Rse State"."rse_pushdown_syncs" WHERE sync_id = $1;

-- write_epoch
-- binds: sync_id: text; epoch: text or NULL
UPDATE "Rse State"."rse_pushdown_syncs" SET epoch = $2 WHERE sync_id = $1;

-- forget_hashes
UPDATE "Rse State"."hashes" SET "rse_hash" = NULL WHERE "rse_hash" IS NOT NULL;

-- changed_rows
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE NOT EXISTS (SELECT 1 FROM "Rse State"."hashes" AS h WHERE h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" AND h."rse_hash" = hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0)) ORDER BY m."Region" COLLATE "C" ASC NULLS FIRST, m."we""ird id" ASC NULLS FIRST;

-- vanished_keys
SELECT h."Region", h."we""ird id" FROM "Rse State"."hashes" AS h WHERE NOT EXISTS (SELECT 1 FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" = h."Region" AND m."we""ird id" = h."we""ird id") ORDER BY h."Region" COLLATE "C" ASC NULLS FIRST, h."we""ird id" ASC NULLS FIRST;

-- diff_rows
SELECT COALESCE(m."Region", h."Region") AS "Region", COALESCE(m."we""ird id", h."we""ird id") AS "we""ird id", m."name", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m) AS m FULL OUTER JOIN "Rse State"."hashes" AS h ON h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash" ORDER BY COALESCE(m."Region", h."Region") COLLATE "C" ASC NULLS FIRST, COALESCE(m."we""ird id", h."we""ird id") ASC NULLS FIRST;

-- all_rows
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m ORDER BY m."Region" COLLATE "C" ASC NULLS FIRST, m."we""ird id" ASC NULLS FIRST;

-- record_intents (2 rows)
-- error: source cannot serve the request: writing keys on PostgreSQL needs the type of key column `Region`; give it with KeyColumn::with_type

-- record_delivered (2 upserts, 1 delete)
-- error: source cannot serve the request: writing keys on PostgreSQL needs the type of key column `Region`; give it with KeyColumn::with_type

