-- Volume totals that no longer fit bigint: a tick's volume may be up to 1e12 (domain/messages.ts),
-- and a symbol's total over 2^32 ticks reaches about 4.3e21, beyond bigint's 9.2e18 (1,025 ticks of
-- 2^53 - 1 already were, and failed every write of their partition). numeric holds any whole number
-- exactly; the actors write the exact total as a decimal string, and the reads of the query service
-- turn it into a double, the JSON number they always answered.
-- Both statements rewrite their table under an exclusive lock: one pass over it, at start-up.
ALTER TABLE aggregated_metrics ALTER COLUMN total_volume TYPE numeric;
ALTER TABLE minute_buckets ALTER COLUMN volume TYPE numeric;
