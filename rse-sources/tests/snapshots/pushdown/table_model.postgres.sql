-- create_syncs_table
CREATE TABLE IF NOT EXISTS "rse_state"."rse_pushdown_syncs" (sync_id text NOT NULL PRIMARY KEY, hash_table text NOT NULL UNIQUE, epoch text);

-- register_sync
-- binds: sync_id: text; hash_table: text
INSERT INTO "rse_state"."rse_pushdown_syncs" (sync_id, hash_table) VALUES ($1, $2) ON CONFLICT (sync_id) DO NOTHING;

-- create_hash_table
CREATE TABLE IF NOT EXISTS "rse_state"."rse_hashes_crm_contacts_6d588617" ("id" bigint NOT NULL, "rse_hash" bigint, PRIMARY KEY ("id")) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02);

-- read_epoch
-- binds: sync_id: text
SELECT epoch FROM "rse_state"."rse_pushdown_syncs" WHERE sync_id = $1;

-- write_epoch
-- binds: sync_id: text; epoch: text or NULL
UPDATE "rse_state"."rse_pushdown_syncs" SET epoch = $2 WHERE sync_id = $1;

-- forget_hashes
UPDATE "rse_state"."rse_hashes_crm_contacts_6d588617" SET "rse_hash" = NULL WHERE "rse_hash" IS NOT NULL;

-- changed_rows
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE NOT EXISTS (SELECT 1 FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" = m."id" AND h."rse_hash" = hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0)) ORDER BY m."id" ASC NULLS FIRST;

-- vanished_keys
SELECT h."id" FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE NOT EXISTS (SELECT 1 FROM "marts"."customers" AS m WHERE m."id" = h."id") ORDER BY h."id" ASC NULLS FIRST;

-- diff_rows
SELECT COALESCE(m."id", h."id") AS "id", m."email", m."profile", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m) AS m FULL OUTER JOIN "rse_state"."rse_hashes_crm_contacts_6d588617" AS h ON h."id" = m."id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash" ORDER BY COALESCE(m."id", h."id") ASC NULLS FIRST;

-- all_rows
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m ORDER BY m."id" ASC NULLS FIRST;

-- record_intents (2 rows)
-- binds: id: text[]
INSERT INTO "rse_state"."rse_hashes_crm_contacts_6d588617" AS h ("id") SELECT d."id" FROM (SELECT u."id"::bigint AS "id" FROM unnest($1::text[]) AS u("id")) AS d ON CONFLICT ("id") DO UPDATE SET "rse_hash" = NULL WHERE h."rse_hash" IS NOT NULL;

-- record_delivered (2 upserts, 1 delete)
-- binds: id: text[]
DELETE FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h USING (SELECT u."id"::bigint AS "id" FROM unnest($1::text[]) AS u("id")) AS d WHERE h."id" = d."id";
-- binds: id: text[]; rse_hash: int8[]
INSERT INTO "rse_state"."rse_hashes_crm_contacts_6d588617" ("id", "rse_hash") SELECT d."id", d."rse_hash" FROM (SELECT u."id"::bigint AS "id", u."rse_hash" FROM unnest($1::text[], $2::int8[]) AS u("id", "rse_hash")) AS d ON CONFLICT ("id") DO UPDATE SET "rse_hash" = EXCLUDED."rse_hash";

