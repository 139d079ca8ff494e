-- create_syncs_table
CREATE TABLE IF NOT EXISTS `Rse State`.`rse_pushdown_syncs` (sync_id STRING NOT NULL, hash_table STRING NOT NULL, epoch STRING);

-- register_sync
-- binds: sync_id: text; hash_table: text
MERGE `Rse State`.`rse_pushdown_syncs` AS s USING (SELECT @sync_id AS sync_id, @hash_table AS hash_table) AS n ON s.sync_id = n.sync_id WHEN NOT MATCHED THEN INSERT (sync_id, hash_table) VALUES (n.sync_id, n.hash_table);

-- create_hash_table
CREATE TABLE IF NOT EXISTS `Rse State`.`hashes` (`Region` STRING NOT NULL, `we"ird id` INT64 NOT NULL, `rse_hash` INT64) CLUSTER BY `Region`, `we"ird id`;

-- read_epoch
-- binds: sync_id: text
SELECT epoch FROM `Rse State`.`rse_pushdown_syncs` WHERE sync_id = @sync_id;

-- write_epoch
-- binds: epoch: text or NULL; sync_id: text
UPDATE `Rse State`.`rse_pushdown_syncs` SET epoch = @epoch WHERE sync_id = @sync_id;

-- forget_hashes
UPDATE `Rse State`.`hashes` SET `rse_hash` = NULL WHERE `rse_hash` IS NOT NULL;

-- changed_rows
SELECT m.*, FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(m.`Region`, m.`we"ird id`, m.`name`))) AS `rse_hash` FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE NOT EXISTS (SELECT 1 FROM `Rse State`.`hashes` AS h WHERE h.`Region` = m.`Region` AND h.`we"ird id` = m.`we"ird id` AND h.`rse_hash` = FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(m.`Region`, m.`we"ird id`, m.`name`)))) ORDER BY m.`Region` ASC NULLS FIRST, m.`we"ird id` ASC NULLS FIRST;

-- vanished_keys
SELECT h.`Region`, h.`we"ird id` FROM `Rse State`.`hashes` AS h WHERE NOT EXISTS (SELECT 1 FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m WHERE m.`Region` = h.`Region` AND m.`we"ird id` = h.`we"ird id`) ORDER BY h.`Region` ASC NULLS FIRST, h.`we"ird id` ASC NULLS FIRST;

-- diff_rows
SELECT COALESCE(m.`Region`, h.`Region`) AS `Region`, COALESCE(m.`we"ird id`, h.`we"ird id`) AS `we"ird id`, m.`name`, m.`rse_hash` FROM (SELECT m.*, TRUE AS rse_present, FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(m.`Region`, m.`we"ird id`, m.`name`))) AS `rse_hash` FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m) AS m FULL OUTER JOIN `Rse State`.`hashes` AS h ON h.`Region` = m.`Region` AND h.`we"ird id` = m.`we"ird id` WHERE m.rse_present IS NULL OR h.`rse_hash` IS NULL OR h.`rse_hash` <> m.`rse_hash` ORDER BY COALESCE(m.`Region`, h.`Region`) ASC NULLS FIRST, COALESCE(m.`we"ird id`, h.`we"ird id`) ASC NULLS FIRST;

-- all_rows
SELECT m.*, FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(m.`Region`, m.`we"ird id`, m.`name`))) AS `rse_hash` FROM (SELECT region AS "Region", id AS "we""ird id", name FROM src) AS m ORDER BY m.`Region` ASC NULLS FIRST, m.`we"ird id` ASC NULLS FIRST;

-- record_intents (2 rows)
-- binds: rows: ARRAY<STRUCT<Region STRING, we"ird id INT64>>
MERGE `Rse State`.`hashes` AS h USING (SELECT * FROM UNNEST(@rows)) AS d ON h.`Region` = d.`Region` AND h.`we"ird id` = d.`we"ird id` WHEN MATCHED AND h.`rse_hash` IS NOT NULL THEN UPDATE SET `rse_hash` = NULL WHEN NOT MATCHED THEN INSERT (`Region`, `we"ird id`) VALUES (d.`Region`, d.`we"ird id`);

-- record_delivered (2 upserts, 1 delete)
-- binds: rows: ARRAY<STRUCT<Region STRING, we"ird id INT64, rse_hash INT64>>
MERGE `Rse State`.`hashes` AS h USING (SELECT * FROM UNNEST(@rows)) AS d ON h.`Region` = d.`Region` AND h.`we"ird id` = d.`we"ird id` WHEN MATCHED AND d.`rse_hash` IS NULL THEN DELETE WHEN MATCHED THEN UPDATE SET `rse_hash` = d.`rse_hash` WHEN NOT MATCHED AND d.`rse_hash` IS NOT NULL THEN INSERT (`Region`, `we"ird id`, `rse_hash`) VALUES (d.`Region`, d.`we"ird id`, d.`rse_hash`);

