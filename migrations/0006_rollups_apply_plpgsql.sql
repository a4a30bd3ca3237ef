-- insight_rollups_apply becomes PL/pgSQL, with the same four statements. As a SQL function it
-- was parsed and planned afresh on every call (a SQL function keeps its plans only for the
-- query that calls it), and every store statement calls it through the insert trigger: a
-- profile of PostgreSQL under the model drain put 9% of its CPU in that parsing and planning
-- (loadtest/DRAIN-BUDGET.md). PL/pgSQL prepares each statement once per session and may keep
-- a generic plan: safe here, where no plan reads a table by the statistics of the day (each
-- reads only its array argument, and ON CONFLICT probes the primary key whatever the plan).
CREATE OR REPLACE FUNCTION "insight_rollups_apply"(d insight_rollup_delta[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
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
END $$;
