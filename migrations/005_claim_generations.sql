-- The consumer group generation each partition was last claimed in (Kafka's generation id, the
-- same number on every member of the group; NULL where the log has none, as the embedded log).
-- A claim from an older generation is refused: a node that froze past the session timeout and
-- wakes up with its old assignment must not take the partition back from the group's choice.
ALTER TABLE partition_epochs ADD COLUMN generation bigint;
