-- The cache's BRIN stops asking for autosummarize (0005 set it). PGlite runs no autovacuum to
-- take the requests, and on PostgreSQL the vacuum that follows inserts summarizes new ranges
-- anyway; a range not yet summarized is read by the purge, never missed. RESET changes only
-- the option, where drizzle-kit's DROP and CREATE would rebuild the index.
ALTER INDEX "analysis_cache_expires_brin" RESET (autosummarize);
