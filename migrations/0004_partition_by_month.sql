-- Conversations and insights become partitioned by month, so retention drops whole
-- partitions instead of running a huge DELETE. The partition key is the id: a UUIDv7, whose
-- first 48 bits are the millisecond it was made at ingest, so a range of ids is a range of
-- time, the primary keys stay what they were (a partitioned table's unique keys must hold
-- its partition key), and a look-up by id reads one partition. An insight's key is its
-- conversation's id, so an insight lives in the same month as its conversation.
--
-- The existing tables are not copied: each is renamed and attached as the first partition,
-- covering every id from the start to the end of the current month (attaching checks the
-- range with one scan of the table). Later months get partitions of their own, made ahead of
-- time by the maintenance step (src/db/partitions.ts), which also drops them after
-- RETENTION_DAYS. Drizzle's schema (src/db/schema.ts) describes the parent tables; it has no
-- words for partitions, so this migration is written by hand.
-- A UUIDv7 made in SQL (PostgreSQL 15 has no uuidv7()): for rows written by hand or by
-- fixtures, which must carry time-ordered ids to land in the partition of their month; a
-- random UUID (gen_random_uuid) falls in whatever range its first bits say.
CREATE FUNCTION "gleaner_uuidv7"("at" timestamptz DEFAULT clock_timestamp()) RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7' || substr(md5(random()::text), 1, 3)
          || to_hex(8 + floor(random() * 4)::int) || substr(md5(random()::text), 1, 15))::uuid
$$;
--> statement-breakpoint
ALTER TABLE "conversations" RENAME TO "conversations_p_legacy";
--> statement-breakpoint
ALTER INDEX "conversations_pkey" RENAME TO "conversations_p_legacy_pkey";
--> statement-breakpoint
ALTER INDEX "conversations_metadata_gin" RENAME TO "conversations_p_legacy_metadata_gin";
--> statement-breakpoint
CREATE TABLE "conversations" (LIKE "conversations_p_legacy" INCLUDING DEFAULTS) PARTITION BY RANGE ("id");
--> statement-breakpoint
ALTER TABLE "conversations" ADD CONSTRAINT "conversations_pkey" PRIMARY KEY ("id");
--> statement-breakpoint
CREATE INDEX "conversations_metadata_gin" ON "conversations" USING gin ("metadata" jsonb_path_ops);
--> statement-breakpoint
-- the rollup triggers move to the parent: a statement trigger there sees the rows of every
-- partition in its transition tables; one left on the old table would count them twice
DROP TRIGGER "insights_rollup_insert" ON "insights";
--> statement-breakpoint
DROP TRIGGER "insights_rollup_delete" ON "insights";
--> statement-breakpoint
DROP TRIGGER "insights_rollup_update" ON "insights";
--> statement-breakpoint
DROP TRIGGER "insights_rollup_truncate" ON "insights";
--> statement-breakpoint
ALTER TABLE "insights" RENAME TO "insights_p_legacy";
--> statement-breakpoint
ALTER INDEX "insights_pkey" RENAME TO "insights_p_legacy_pkey";
--> statement-breakpoint
ALTER INDEX "insights_created_idx" RENAME TO "insights_p_legacy_created_idx";
--> statement-breakpoint
ALTER INDEX "insights_source_created_idx" RENAME TO "insights_p_legacy_source_created_idx";
--> statement-breakpoint
ALTER INDEX "insights_sentiment_created_idx" RENAME TO "insights_p_legacy_sentiment_created_idx";
--> statement-breakpoint
ALTER INDEX "insights_urgency_created_idx" RENAME TO "insights_p_legacy_urgency_created_idx";
--> statement-breakpoint
ALTER INDEX "insights_intent_created_idx" RENAME TO "insights_p_legacy_intent_created_idx";
--> statement-breakpoint
ALTER INDEX "insights_topics_gin" RENAME TO "insights_p_legacy_topics_gin";
--> statement-breakpoint
CREATE TABLE "insights" (LIKE "insights_p_legacy" INCLUDING DEFAULTS) PARTITION BY RANGE ("conversation_id");
--> statement-breakpoint
ALTER TABLE "insights" ADD CONSTRAINT "insights_pkey" PRIMARY KEY ("conversation_id");
--> statement-breakpoint
CREATE INDEX "insights_created_idx" ON "insights" USING btree ("created_at","conversation_id");
--> statement-breakpoint
CREATE INDEX "insights_source_created_idx" ON "insights" USING btree ("source","created_at","conversation_id");
--> statement-breakpoint
CREATE INDEX "insights_sentiment_created_idx" ON "insights" USING btree ("sentiment","created_at","conversation_id");
--> statement-breakpoint
CREATE INDEX "insights_urgency_created_idx" ON "insights" USING btree ("urgency","created_at","conversation_id");
--> statement-breakpoint
CREATE INDEX "insights_intent_created_idx" ON "insights" USING btree ("intent","created_at","conversation_id");
--> statement-breakpoint
CREATE INDEX "insights_topics_gin" ON "insights" USING gin ("topics");
--> statement-breakpoint
-- The old tables become the first partitions: every id up to the first UUIDv7 of next month
-- (UTC). Their indexes match the parent's, so attaching adopts them instead of building new ones.
DO $$
DECLARE
  next_month timestamptz := (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
  hex text := lpad(to_hex((extract(epoch FROM next_month) * 1000)::bigint), 12, '0');
  bound text := substr(hex, 1, 8) || '-' || substr(hex, 9, 4) || '-0000-0000-000000000000';
BEGIN
  EXECUTE format('ALTER TABLE "conversations" ATTACH PARTITION "conversations_p_legacy" FOR VALUES FROM (MINVALUE) TO (%L)', bound);
  EXECUTE format('ALTER TABLE "insights" ATTACH PARTITION "insights_p_legacy" FOR VALUES FROM (MINVALUE) TO (%L)', bound);
END $$;
--> statement-breakpoint
CREATE TRIGGER "insights_rollup_insert" AFTER INSERT ON "insights" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION insights_rollup_on_insert();
--> statement-breakpoint
CREATE TRIGGER "insights_rollup_delete" AFTER DELETE ON "insights" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION insights_rollup_on_delete();
--> statement-breakpoint
CREATE TRIGGER "insights_rollup_update" AFTER UPDATE ON "insights" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION insights_rollup_on_update();
--> statement-breakpoint
CREATE TRIGGER "insights_rollup_truncate" AFTER TRUNCATE ON "insights" FOR EACH STATEMENT EXECUTE FUNCTION insights_rollup_on_truncate();
