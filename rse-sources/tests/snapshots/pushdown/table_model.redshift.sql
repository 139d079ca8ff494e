-- create_syncs_table
CREATE TABLE IF NOT EXISTS "rse_state"."rse_pushdown_syncs" (sync_id VARCHAR(1024) NOT NULL PRIMARY KEY, hash_table VARCHAR(1024) NOT NULL UNIQUE, epoch VARCHAR(1024));

-- register_sync
-- binds: sync_id: text; hash_table: text
INSERT INTO "rse_state"."rse_pushdown_syncs" (sync_id, hash_table) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM "rse_state"."rse_pushdown_syncs" WHERE sync_id = $1);

-- create_hash_table
CREATE TABLE IF NOT EXISTS "rse_state"."rse_hashes_crm_contacts_6d588617" ("id" BIGINT NOT NULL, "rse_hash" BIGINT, PRIMARY KEY ("id")) DISTKEY ("id") SORTKEY ("id");

-- read_epoch
-- binds: sync_id: text
SELECT epoch FROM "rse_state"."rse_pushdown_syncs" WHERE sync_id = $1;

-- write_epoch
-- binds: sync_id: text; epoch: text or NULL
UPDATE "rse_state"."rse_pushdown_syncs" SET epoch = $2 WHERE sync_id = $1;

-- forget_hashes
UPDATE "rse_state"."rse_hashes_crm_contacts_6d588617" SET "rse_hash" = NULL WHERE "rse_hash" IS NOT NULL;

-- changed_rows
SELECT m.*, FNV_HASH(COALESCE(CAST(m."profile" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."profile" AS VARCHAR(65535))), -1), FNV_HASH(COALESCE(CAST(m."email" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."email" AS VARCHAR(65535))), -1), FNV_HASH(COALESCE(CAST(m."id" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."id" AS VARCHAR(65535))), -1))))))) AS "rse_hash" FROM "marts"."customers" AS m WHERE NOT EXISTS (SELECT 1 FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" = m."id" AND h."rse_hash" = FNV_HASH(COALESCE(CAST(m."profile" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."profile" AS VARCHAR(65535))), -1), FNV_HASH(COALESCE(CAST(m."email" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."email" AS VARCHAR(65535))), -1), FNV_HASH(COALESCE(CAST(m."id" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."id" AS VARCHAR(65535))), -1)))))))) ORDER BY m."id" ASC NULLS FIRST;

-- vanished_keys
SELECT h."id" FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE NOT EXISTS (SELECT 1 FROM "marts"."customers" AS m WHERE m."id" = h."id") ORDER BY h."id" ASC NULLS FIRST;

-- diff_rows
SELECT COALESCE(m."id", h."id") AS "id", m."email", m."profile", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, FNV_HASH(COALESCE(CAST(m."profile" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."profile" AS VARCHAR(65535))), -1), FNV_HASH(COALESCE(CAST(m."email" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."email" AS VARCHAR(65535))), -1), FNV_HASH(COALESCE(CAST(m."id" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."id" AS VARCHAR(65535))), -1))))))) AS "rse_hash" FROM "marts"."customers" AS m) AS m FULL OUTER JOIN "rse_state"."rse_hashes_crm_contacts_6d588617" AS h ON h."id" = m."id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash" ORDER BY COALESCE(m."id", h."id") ASC NULLS FIRST;

-- all_rows
SELECT m.*, FNV_HASH(COALESCE(CAST(m."profile" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."profile" AS VARCHAR(65535))), -1), FNV_HASH(COALESCE(CAST(m."email" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."email" AS VARCHAR(65535))), -1), FNV_HASH(COALESCE(CAST(m."id" AS VARCHAR(65535)), ''), FNV_HASH(COALESCE(OCTET_LENGTH(CAST(m."id" AS VARCHAR(65535))), -1))))))) AS "rse_hash" FROM "marts"."customers" AS m ORDER BY m."id" ASC NULLS FIRST;

-- record_intents (2 rows)
-- binds: id[0]: BIGINT; id[1]: BIGINT
MERGE INTO "rse_state"."rse_hashes_crm_contacts_6d588617" USING (SELECT $1::BIGINT AS "id" UNION ALL SELECT $2::BIGINT) AS d ON "rse_state"."rse_hashes_crm_contacts_6d588617"."id" = d."id" WHEN MATCHED THEN UPDATE SET "rse_hash" = NULL WHEN NOT MATCHED THEN INSERT ("id") VALUES (d."id");

-- record_delivered (2 upserts, 1 delete)
-- binds: id[0]: BIGINT
DELETE FROM "rse_state"."rse_hashes_crm_contacts_6d588617" USING (SELECT $1::BIGINT AS "id") AS d WHERE "rse_state"."rse_hashes_crm_contacts_6d588617"."id" = d."id";
-- binds: id[0]: BIGINT; rse_hash[0]: BIGINT; id[1]: BIGINT; rse_hash[1]: BIGINT
MERGE INTO "rse_state"."rse_hashes_crm_contacts_6d588617" USING (SELECT $1::BIGINT AS "id", $2::BIGINT AS "rse_hash" UNION ALL SELECT $3::BIGINT, $4::BIGINT) AS d ON "rse_state"."rse_hashes_crm_contacts_6d588617"."id" = d."id" WHEN MATCHED THEN UPDATE SET "rse_hash" = d."rse_hash" WHEN NOT MATCHED THEN INSERT ("id", "rse_hash") VALUES (d."id", d."rse_hash");

