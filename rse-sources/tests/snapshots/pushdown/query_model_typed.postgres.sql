-- create_syncs_table
CREATE TABLE IF NOT EXISTS "Rse State"."rse_pushdown_syncs" (sync_id text NOT NULL PRIMARY KEY, hash_table text NOT NULL UNIQUE, epoch text);

-- register_sync
-- binds: sync_id: text; hash_table: text
INSERT INTO "Rse State"."rse_pushdown_syncs" (sync_id, hash_table) VALUES ($1, $2) ON CONFLICT (sync_id) DO NOTHING;

-- create_hash_table
CREATE TABLE IF NOT EXISTS "Rse State"."hashes" ("Region" text NOT NULL, "we""ird id" integer NOT NULL, "rse_hash" bigint, PRIMARY KEY ("Region", "we""ird id")) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02);

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
-- binds: Region: text[]; we"ird id: text[]
INSERT INTO "Rse State"."hashes" AS h ("Region", "we""ird id") SELECT d."Region", d."we""ird id" FROM (SELECT u."Region"::text AS "Region", u."we""ird id"::integer AS "we""ird id" FROM unnest($1::text[], $2::text[]) AS u("Region", "we""ird id")) AS d ON CONFLICT ("Region", "we""ird id") DO UPDATE SET "rse_hash" = NULL WHERE h."rse_hash" IS NOT NULL;

-- record_delivered (2 upserts, 1 delete)
-- binds: Region: text[]; we"ird id: text[]
DELETE FROM "Rse State"."hashes" AS h USING (SELECT u."Region"::text AS "Region", u."we""ird id"::integer AS "we""ird id" FROM unnest($1::text[], $2::text[]) AS u("Region", "we""ird id")) AS d WHERE h."Region" = d."Region" AND h."we""ird id" = d."we""ird id";
-- binds: Region: text[]; we"ird id: text[]; rse_hash: int8[]
INSERT INTO "Rse State"."hashes" ("Region", "we""ird id", "rse_hash") SELECT d."Region", d."we""ird id", d."rse_hash" FROM (SELECT u."Region"::text AS "Region", u."we""ird id"::integer AS "we""ird id", u."rse_hash" FROM unnest($1::text[], $2::text[], $3::int8[]) AS u("Region", "we""ird id", "rse_hash")) AS d ON CONFLICT ("Region", "we""ird id") DO UPDATE SET "rse_hash" = EXCLUDED."rse_hash";

