CREATE TABLE "erasures" (
	"id" uuid PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"selector" text NOT NULL,
	"conversation_ids" uuid[] NOT NULL,
	"erased" integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE "insight_rollups" (
	"day" date NOT NULL,
	"source" text NOT NULL,
	"sentiment" text NOT NULL,
	"urgency" text NOT NULL,
	"intent" text NOT NULL,
	"n" bigint NOT NULL,
	"score_sum" double precision NOT NULL,
	CONSTRAINT "insight_rollups_pk" PRIMARY KEY("day","source","sentiment","urgency","intent")
);
--> statement-breakpoint
CREATE TABLE "insight_rollups_narrow" (
	"day" date NOT NULL,
	"source" text NOT NULL,
	"sentiment" text NOT NULL,
	"urgency" text NOT NULL,
	"n" bigint NOT NULL,
	"score_sum" double precision NOT NULL,
	CONSTRAINT "insight_rollups_narrow_pk" PRIMARY KEY("day","source","sentiment","urgency")
);
--> statement-breakpoint
CREATE TABLE "insight_topic_rollups" (
	"day" date NOT NULL,
	"topic" text NOT NULL,
	"source" text NOT NULL,
	"sentiment" text NOT NULL,
	"urgency" text NOT NULL,
	"intent" text NOT NULL,
	"n" bigint NOT NULL,
	"score_sum" double precision NOT NULL,
	CONSTRAINT "insight_topic_rollups_pk" PRIMARY KEY("day","topic","source","sentiment","urgency","intent")
);
--> statement-breakpoint
CREATE TABLE "insight_topic_totals" (
	"day" date NOT NULL,
	"source" text NOT NULL,
	"topic" text NOT NULL,
	"n" bigint NOT NULL,
	CONSTRAINT "insight_topic_totals_pk" PRIMARY KEY("day","source","topic")
);
--> statement-breakpoint
CREATE INDEX "insight_topic_rollups_topic_day_idx" ON "insight_topic_rollups" USING btree ("topic","day");--> statement-breakpoint
CREATE INDEX "conversations_metadata_gin" ON "conversations" USING gin ("metadata" jsonb_path_ops);
--> statement-breakpoint
-- Rollups are kept by statement-level triggers on insights rather than by the worker's code:
-- every path that writes insights (storing, a future re-analysis, erasure, the FK cascade
-- from conversations, an operator's SQL) then keeps them exact, in the same transaction.
-- Each statement's rows are folded into one delta per key and applied in key order, so
-- concurrent writers lock rollup rows in the same order and cannot deadlock each other.
CREATE TYPE "insight_rollup_delta" AS (created_at timestamptz, source text, sentiment text, urgency text, intent text, topics text[], score float8, sign int);
--> statement-breakpoint
CREATE FUNCTION "insight_rollups_apply"(d insight_rollup_delta[]) RETURNS void LANGUAGE sql AS $$
  INSERT INTO insight_rollups AS r (day, source, sentiment, urgency, intent, n, score_sum)
  SELECT (x.created_at AT TIME ZONE 'UTC')::date, x.source, x.sentiment, x.urgency, x.intent, sum(x.sign), sum(x.sign * x.score)
  FROM unnest(d) AS x GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (day, source, sentiment, urgency, intent) DO UPDATE SET n = r.n + excluded.n, score_sum = r.score_sum + excluded.score_sum;
  INSERT INTO insight_rollups_narrow AS r (day, source, sentiment, urgency, n, score_sum)
  SELECT (x.created_at AT TIME ZONE 'UTC')::date, x.source, x.sentiment, x.urgency, sum(x.sign), sum(x.sign * x.score)
  FROM unnest(d) AS x GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
  ON CONFLICT (day, source, sentiment, urgency) DO UPDATE SET n = r.n + excluded.n, score_sum = r.score_sum + excluded.score_sum;
  INSERT INTO insight_topic_rollups AS r (day, topic, source, sentiment, urgency, intent, n, score_sum)
  SELECT (x.created_at AT TIME ZONE 'UTC')::date, t.topic, x.source, x.sentiment, x.urgency, x.intent, sum(x.sign), sum(x.sign * x.score)
  FROM unnest(d) AS x, LATERAL (SELECT DISTINCT topic FROM unnest(x.topics) AS topic) AS t
  GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
  ON CONFLICT (day, topic, source, sentiment, urgency, intent) DO UPDATE SET n = r.n + excluded.n, score_sum = r.score_sum + excluded.score_sum;
  INSERT INTO insight_topic_totals AS r (day, source, topic, n)
  SELECT (x.created_at AT TIME ZONE 'UTC')::date, x.source, t.topic, sum(x.sign)
  FROM unnest(d) AS x, LATERAL (SELECT DISTINCT topic FROM unnest(x.topics) AS topic) AS t
  GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
  ON CONFLICT (day, source, topic) DO UPDATE SET n = r.n + excluded.n;
$$;
--> statement-breakpoint
CREATE FUNCTION "insights_rollup_on_insert"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM insight_rollups_apply(ARRAY(
    SELECT ROW(created_at, source, sentiment, urgency, intent, topics, sentiment_score, 1)::insight_rollup_delta FROM new_rows));
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE FUNCTION "insights_rollup_on_delete"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM insight_rollups_apply(ARRAY(
    SELECT ROW(created_at, source, sentiment, urgency, intent, topics, sentiment_score, -1)::insight_rollup_delta FROM old_rows));
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE FUNCTION "insights_rollup_on_update"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM insight_rollups_apply(ARRAY(
    SELECT ROW(created_at, source, sentiment, urgency, intent, topics, sentiment_score, -1)::insight_rollup_delta FROM old_rows
    UNION ALL
    SELECT ROW(created_at, source, sentiment, urgency, intent, topics, sentiment_score, 1)::insight_rollup_delta FROM new_rows));
  RETURN NULL;
END $$;
--> statement-breakpoint
-- TRUNCATE fires no row deltas: the rollups of an emptied table are empty
CREATE FUNCTION "insights_rollup_on_truncate"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE insight_rollups, insight_rollups_narrow, insight_topic_rollups, insight_topic_totals;
  RETURN NULL;
END $$;
--> statement-breakpoint
-- The triggers come before the backfill: creating them locks insights against writes until
-- this migration commits, so no insight is stored between the backfill's read and the
-- triggers taking over (none counted twice, none missed).
CREATE TRIGGER "insights_rollup_insert" AFTER INSERT ON "insights" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION insights_rollup_on_insert();
--> statement-breakpoint
CREATE TRIGGER "insights_rollup_delete" AFTER DELETE ON "insights" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION insights_rollup_on_delete();
--> statement-breakpoint
CREATE TRIGGER "insights_rollup_update" AFTER UPDATE ON "insights" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION insights_rollup_on_update();
--> statement-breakpoint
CREATE TRIGGER "insights_rollup_truncate" AFTER TRUNCATE ON "insights" FOR EACH STATEMENT EXECUTE FUNCTION insights_rollup_on_truncate();
--> statement-breakpoint
-- Backfill: the insights stored before this migration, one grouped scan per table.
INSERT INTO insight_rollups (day, source, sentiment, urgency, intent, n, score_sum)
SELECT (created_at AT TIME ZONE 'UTC')::date, source, sentiment, urgency, intent, count(*), sum(sentiment_score::float8)
FROM insights GROUP BY 1, 2, 3, 4, 5;
--> statement-breakpoint
INSERT INTO insight_rollups_narrow (day, source, sentiment, urgency, n, score_sum)
SELECT day, source, sentiment, urgency, sum(n), sum(score_sum) FROM insight_rollups GROUP BY 1, 2, 3, 4;
--> statement-breakpoint
INSERT INTO insight_topic_rollups (day, topic, source, sentiment, urgency, intent, n, score_sum)
SELECT (i.created_at AT TIME ZONE 'UTC')::date, t.topic, i.source, i.sentiment, i.urgency, i.intent, count(*), sum(i.sentiment_score::float8)
FROM insights AS i, LATERAL (SELECT DISTINCT topic FROM unnest(i.topics) AS topic) AS t GROUP BY 1, 2, 3, 4, 5, 6;
--> statement-breakpoint
INSERT INTO insight_topic_totals (day, source, topic, n)
SELECT (i.created_at AT TIME ZONE 'UTC')::date, i.source, t.topic, count(*)
FROM insights AS i, LATERAL (SELECT DISTINCT topic FROM unnest(i.topics) AS topic) AS t GROUP BY 1, 2, 3;
