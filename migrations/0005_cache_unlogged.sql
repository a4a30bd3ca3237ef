-- The analysis cache becomes UNLOGGED: it holds only what a model call can make again, so a
-- crash that empties it (PostgreSQL truncates unlogged tables in crash recovery) costs model
-- calls and nothing acknowledged, while each row stops writing WAL (~700 B a conversation
-- with the fake model, loadtest/DRAIN-BUDGET.md). Drizzle has no word for UNLOGGED: the
-- ALTER is written by hand; the index change below it is drizzle-kit's.
-- SET UNLOGGED rewrites the table once, under an exclusive lock: the btree goes first so the
-- rewrite does not copy it.
DROP INDEX "analysis_cache_expires_idx";--> statement-breakpoint
ALTER TABLE "analysis_cache" SET UNLOGGED;--> statement-breakpoint
CREATE INDEX "analysis_cache_expires_brin" ON "analysis_cache" USING brin ("expires_at") WITH (autosummarize=on);
