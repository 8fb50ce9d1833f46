-- How far each partition's results are written: the offset of the last message whose results
-- are stored, set by the same transaction that stores them (under the partition's epoch). Every
-- message above it has nothing in the results tables yet, so its ticks are appended with COPY,
-- no conflict check; a replay at or below it goes through the checking insert instead.
-- -1 (a new partition, or results written before this column existed): the writer tries COPY,
-- and falls back to the checking insert for that batch if a row is already there.
ALTER TABLE partition_epochs ADD COLUMN written_offset bigint NOT NULL DEFAULT -1;
