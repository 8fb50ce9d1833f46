-- Each use of an idempotency key gets a number from one sequence, so later uses have larger
-- numbers: a key taken over after its TTL is a new use, and its messages carry the new number
-- (Kafka header `idempotency-use`). The actors compare a message's use with their mark's, so a
-- new use of a key is never mistaken for a repeat of the old one, and no clock decides it.
CREATE SEQUENCE idempotency_key_uses;
ALTER TABLE idempotency_keys ADD COLUMN use_id bigint NOT NULL DEFAULT nextval('idempotency_key_uses');
-- 0: a mark set before uses were numbered (it compares by message index alone).
ALTER TABLE idempotency_marks ADD COLUMN use_id bigint NOT NULL DEFAULT 0;
