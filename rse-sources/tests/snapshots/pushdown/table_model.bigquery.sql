-- create_syncs_table
CREATE TABLE IF NOT EXISTS `rse_state`.`rse_pushdown_syncs` (sync_id STRING NOT NULL, hash_table STRING NOT NULL, epoch STRING);

-- register_sync
-- binds: sync_id: text; hash_table: text
MERGE `rse_state`.`rse_pushdown_syncs` AS s USING (SELECT @sync_id AS sync_id, @hash_table AS hash_table) AS n ON s.sync_id = n.sync_id WHEN NOT MATCHED THEN INSERT (sync_id, hash_table) VALUES (n.sync_id, n.hash_table);

-- create_hash_table
CREATE TABLE IF NOT EXISTS `rse_state`.`rse_hashes_crm_contacts_6d588617` (`id` INT64 NOT NULL, `rse_hash` INT64) CLUSTER BY `id`;

-- read_epoch
-- binds: sync_id: text
SELECT epoch FROM `rse_state`.`rse_pushdown_syncs` WHERE sync_id = @sync_id;

-- write_epoch
-- binds: epoch: text or NULL; sync_id: text
UPDATE `rse_state`.`rse_pushdown_syncs` SET epoch = @epoch WHERE sync_id = @sync_id;

-- forget_hashes
UPDATE `rse_state`.`rse_hashes_crm_contacts_6d588617` SET `rse_hash` = NULL WHERE `rse_hash` IS NOT NULL;

-- changed_rows
SELECT m.*, FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(m.`id`, m.`email`, m.`profile`))) AS `rse_hash` FROM `marts`.`customers` AS m WHERE NOT EXISTS (SELECT 1 FROM `rse_state`.`rse_hashes_crm_contacts_6d588617` AS h WHERE h.`id` = m.`id` AND h.`rse_hash` = FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(m.`id`, m.`email`, m.`profile`)))) ORDER BY m.`id` ASC NULLS FIRST;

-- vanished_keys
SELECT h.`id` FROM `rse_state`.`rse_hashes_crm_contacts_6d588617` AS h WHERE NOT EXISTS (SELECT 1 FROM `marts`.`customers` AS m WHERE m.`id` = h.`id`) ORDER BY h.`id` ASC NULLS FIRST;

-- diff_rows
SELECT COALESCE(m.`id`, h.`id`) AS `id`, m.`email`, m.`profile`, m.`rse_hash` FROM (SELECT m.*, TRUE AS rse_present, FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(m.`id`, m.`email`, m.`profile`))) AS `rse_hash` FROM `marts`.`customers` AS m) AS m FULL OUTER JOIN `rse_state`.`rse_hashes_crm_contacts_6d588617` AS h ON h.`id` = m.`id` WHERE m.rse_present IS NULL OR h.`rse_hash` IS NULL OR h.`rse_hash` <> m.`rse_hash` ORDER BY COALESCE(m.`id`, h.`id`) ASC NULLS FIRST;

-- all_rows
SELECT m.*, FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(m.`id`, m.`email`, m.`profile`))) AS `rse_hash` FROM `marts`.`customers` AS m ORDER BY m.`id` ASC NULLS FIRST;

-- record_intents (2 rows)
-- binds: rows: ARRAY<STRUCT<id INT64>>
MERGE `rse_state`.`rse_hashes_crm_contacts_6d588617` AS h USING (SELECT * FROM UNNEST(@rows)) AS d ON h.`id` = d.`id` WHEN MATCHED AND h.`rse_hash` IS NOT NULL THEN UPDATE SET `rse_hash` = NULL WHEN NOT MATCHED THEN INSERT (`id`) VALUES (d.`id`);

-- record_delivered (2 upserts, 1 delete)
-- binds: rows: ARRAY<STRUCT<id INT64, rse_hash INT64>>
MERGE `rse_state`.`rse_hashes_crm_contacts_6d588617` AS h USING (SELECT * FROM UNNEST(@rows)) AS d ON h.`id` = d.`id` WHEN MATCHED AND d.`rse_hash` IS NULL THEN DELETE WHEN MATCHED THEN UPDATE SET `rse_hash` = d.`rse_hash` WHEN NOT MATCHED AND d.`rse_hash` IS NOT NULL THEN INSERT (`id`, `rse_hash`) VALUES (d.`id`, d.`rse_hash`);

