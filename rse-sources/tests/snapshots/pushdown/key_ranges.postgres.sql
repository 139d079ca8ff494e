-- diff_rows, Below
-- binds: upper: text (a value of `id`)
SELECT COALESCE(m."id", h."id") AS "id", m."email", m."profile", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" < CAST(CAST($1 AS text) AS bigint)) AS m FULL OUTER JOIN (SELECT * FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" < CAST(CAST($1 AS text) AS bigint)) AS h ON h."id" = m."id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash";

-- changed_rows, Below
-- binds: upper: text (a value of `id`)
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" < CAST(CAST($1 AS text) AS bigint) AND NOT EXISTS (SELECT 1 FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" = m."id" AND h."rse_hash" = hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0));

-- vanished_keys, Below
-- binds: upper: text (a value of `id`)
SELECT h."id" FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" < CAST(CAST($1 AS text) AS bigint) AND NOT EXISTS (SELECT 1 FROM "marts"."customers" AS m WHERE m."id" = h."id");

-- all_rows, Below
-- binds: upper: text (a value of `id`)
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" < CAST(CAST($1 AS text) AS bigint);

-- diff_rows, Between
-- binds: lower: text (a value of `id`); upper: text (a value of `id`)
SELECT COALESCE(m."id", h."id") AS "id", m."email", m."profile", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" >= CAST(CAST($1 AS text) AS bigint) AND m."id" < CAST(CAST($2 AS text) AS bigint)) AS m FULL OUTER JOIN (SELECT * FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" >= CAST(CAST($1 AS text) AS bigint) AND h."id" < CAST(CAST($2 AS text) AS bigint)) AS h ON h."id" = m."id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash";

-- changed_rows, Between
-- binds: lower: text (a value of `id`); upper: text (a value of `id`)
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" >= CAST(CAST($1 AS text) AS bigint) AND m."id" < CAST(CAST($2 AS text) AS bigint) AND NOT EXISTS (SELECT 1 FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" = m."id" AND h."rse_hash" = hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0));

-- vanished_keys, Between
-- binds: lower: text (a value of `id`); upper: text (a value of `id`)
SELECT h."id" FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" >= CAST(CAST($1 AS text) AS bigint) AND h."id" < CAST(CAST($2 AS text) AS bigint) AND NOT EXISTS (SELECT 1 FROM "marts"."customers" AS m WHERE m."id" = h."id");

-- all_rows, Between
-- binds: lower: text (a value of `id`); upper: text (a value of `id`)
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" >= CAST(CAST($1 AS text) AS bigint) AND m."id" < CAST(CAST($2 AS text) AS bigint);

-- diff_rows, From
-- binds: lower: text (a value of `id`)
SELECT COALESCE(m."id", h."id") AS "id", m."email", m."profile", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" >= CAST(CAST($1 AS text) AS bigint)) AS m FULL OUTER JOIN (SELECT * FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" >= CAST(CAST($1 AS text) AS bigint)) AS h ON h."id" = m."id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash";

-- changed_rows, From
-- binds: lower: text (a value of `id`)
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" >= CAST(CAST($1 AS text) AS bigint) AND NOT EXISTS (SELECT 1 FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" = m."id" AND h."rse_hash" = hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0));

-- vanished_keys, From
-- binds: lower: text (a value of `id`)
SELECT h."id" FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" >= CAST(CAST($1 AS text) AS bigint) AND NOT EXISTS (SELECT 1 FROM "marts"."customers" AS m WHERE m."id" = h."id");

-- all_rows, From
-- binds: lower: text (a value of `id`)
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" >= CAST(CAST($1 AS text) AS bigint);

-- diff_rows, Null
SELECT COALESCE(m."id", h."id") AS "id", m."email", m."profile", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" IS NULL) AS m FULL OUTER JOIN (SELECT * FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" IS NULL) AS h ON h."id" = m."id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash";

-- changed_rows, Null
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" IS NULL AND NOT EXISTS (SELECT 1 FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" = m."id" AND h."rse_hash" = hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0));

-- vanished_keys, Null
SELECT h."id" FROM "rse_state"."rse_hashes_crm_contacts_6d588617" AS h WHERE h."id" IS NULL AND NOT EXISTS (SELECT 1 FROM "marts"."customers" AS m WHERE m."id" = h."id");

-- all_rows, Null
SELECT m.*, hash_record_extended(ROW(m."id", m."email", m."profile"::text), 0) AS "rse_hash" FROM "marts"."customers" AS m WHERE m."id" IS NULL;

-- diff_rows, Below
-- binds: upper: text (a value of `Region`)
SELECT COALESCE(m."Region", h."Region") AS "Region", COALESCE(m."we""ird id", h."we""ird id") AS "we""ird id", m."name", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" < CAST(CAST($1 AS text) AS text)) AS m FULL OUTER JOIN (SELECT * FROM "Rse State"."hashes" AS h WHERE h."Region" < CAST(CAST($1 AS text) AS text)) AS h ON h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash";

-- changed_rows, Below
-- binds: upper: text (a value of `Region`)
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" < CAST(CAST($1 AS text) AS text) AND NOT EXISTS (SELECT 1 FROM "Rse State"."hashes" AS h WHERE h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" AND h."rse_hash" = hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0));

-- vanished_keys, Below
-- binds: upper: text (a value of `Region`)
SELECT h."Region", h."we""ird id" FROM "Rse State"."hashes" AS h WHERE h."Region" < CAST(CAST($1 AS text) AS text) AND NOT EXISTS (SELECT 1 FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" = h."Region" AND m."we""ird id" = h."we""ird id");

-- all_rows, Below
-- binds: upper: text (a value of `Region`)
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" < CAST(CAST($1 AS text) AS text);

-- diff_rows, Between
-- binds: lower: text (a value of `Region`); upper: text (a value of `Region`)
SELECT COALESCE(m."Region", h."Region") AS "Region", COALESCE(m."we""ird id", h."we""ird id") AS "we""ird id", m."name", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" >= CAST(CAST($1 AS text) AS text) AND m."Region" < CAST(CAST($2 AS text) AS text)) AS m FULL OUTER JOIN (SELECT * FROM "Rse State"."hashes" AS h WHERE h."Region" >= CAST(CAST($1 AS text) AS text) AND h."Region" < CAST(CAST($2 AS text) AS text)) AS h ON h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash";

-- changed_rows, Between
-- binds: lower: text (a value of `Region`); upper: text (a value of `Region`)
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" >= CAST(CAST($1 AS text) AS text) AND m."Region" < CAST(CAST($2 AS text) AS text) AND NOT EXISTS (SELECT 1 FROM "Rse State"."hashes" AS h WHERE h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" AND h."rse_hash" = hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0));

-- vanished_keys, Between
-- binds: lower: text (a value of `Region`); upper: text (a value of `Region`)
SELECT h."Region", h."we""ird id" FROM "Rse State"."hashes" AS h WHERE h."Region" >= CAST(CAST($1 AS text) AS text) AND h."Region" < CAST(CAST($2 AS text) AS text) AND NOT EXISTS (SELECT 1 FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" = h."Region" AND m."we""ird id" = h."we""ird id");

-- all_rows, Between
-- binds: lower: text (a value of `Region`); upper: text (a value of `Region`)
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" >= CAST(CAST($1 AS text) AS text) AND m."Region" < CAST(CAST($2 AS text) AS text);

-- diff_rows, From
-- binds: lower: text (a value of `Region`)
SELECT COALESCE(m."Region", h."Region") AS "Region", COALESCE(m."we""ird id", h."we""ird id") AS "we""ird id", m."name", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" >= CAST(CAST($1 AS text) AS text)) AS m FULL OUTER JOIN (SELECT * FROM "Rse State"."hashes" AS h WHERE h."Region" >= CAST(CAST($1 AS text) AS text)) AS h ON h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash";

-- changed_rows, From
-- binds: lower: text (a value of `Region`)
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" >= CAST(CAST($1 AS text) AS text) AND NOT EXISTS (SELECT 1 FROM "Rse State"."hashes" AS h WHERE h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" AND h."rse_hash" = hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0));

-- vanished_keys, From
-- binds: lower: text (a value of `Region`)
SELECT h."Region", h."we""ird id" FROM "Rse State"."hashes" AS h WHERE h."Region" >= CAST(CAST($1 AS text) AS text) AND NOT EXISTS (SELECT 1 FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" = h."Region" AND m."we""ird id" = h."we""ird id");

-- all_rows, From
-- binds: lower: text (a value of `Region`)
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" >= CAST(CAST($1 AS text) AS text);

-- diff_rows, Null
SELECT COALESCE(m."Region", h."Region") AS "Region", COALESCE(m."we""ird id", h."we""ird id") AS "we""ird id", m."name", m."rse_hash" FROM (SELECT m.*, TRUE AS rse_present, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" IS NULL) AS m FULL OUTER JOIN (SELECT * FROM "Rse State"."hashes" AS h WHERE h."Region" IS NULL) AS h ON h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" WHERE m.rse_present IS NULL OR h."rse_hash" IS NULL OR h."rse_hash" <> m."rse_hash";

-- changed_rows, Null
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" IS NULL AND NOT EXISTS (SELECT 1 FROM "Rse State"."hashes" AS h WHERE h."Region" = m."Region" AND h."we""ird id" = m."we""ird id" AND h."rse_hash" = hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0));

-- vanished_keys, Null
SELECT h."Region", h."we""ird id" FROM "Rse State"."hashes" AS h WHERE h."Region" IS NULL AND NOT EXISTS (SELECT 1 FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" = h."Region" AND m."we""ird id" = h."we""ird id");

-- all_rows, Null
SELECT m.*, hash_record_extended(ROW(m."Region", m."we""ird id", m."name"), 0) AS "rse_hash" FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m."Region" IS NULL;

