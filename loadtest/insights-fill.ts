// Analysed conversations made by the database itself (generate_series), for exports at a
// scale the pipeline would take minutes to produce: one statement per chunk, both back
// ends. Labels come from src/domain.ts as parameters, so the fixture never re-declares them.
import { COMMON_TOPICS, INTENTS, SENTIMENTS, URGENCIES } from '../src/domain.ts'

/**
 * Inserts `count` analysed conversations (with their idempotency keys) and their insights, numbered from `first`,
 * one second apart going back from `newest`. Every seventh summary carries quotes, commas
 * and a line break, so CSV quoting is exercised on every batch.
 */
export const FILL_INSIGHTS_SQL = `
WITH c AS (
  INSERT INTO conversations (id, source, external_id, messages, text_hash, received_at)
  SELECT gleaner_uuidv7(t), 'fill-' || (g % 5), 'fill-' || g,
         jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'I was charged twice for order ' || g || ', please refund it.')),
         md5(g::text), t
  FROM generate_series($1::int, $1::int + $2::int - 1) AS g, LATERAL (SELECT $3::timestamptz - g * interval '1 second' AS t) AS x
  RETURNING id, source, external_id, received_at
), k AS (
  INSERT INTO conversation_keys (source, external_id, producer, conversation_id) SELECT source, external_id, '', id FROM c
)
INSERT INTO insights (conversation_id, source, sentiment, sentiment_score, topics, intent, urgency, summary, language, model,
                      prompt_version, input_tokens, output_tokens, cost_usd, created_at)
SELECT id, source, s.sentiment, s.score,
       ARRAY[($5::text[])[1 + n % cardinality($5::text[])], ($5::text[])[1 + (n / 7) % cardinality($5::text[])]],
       ($6::text[])[1 + n % cardinality($6::text[])], ($7::text[])[1 + n % cardinality($7::text[])],
       CASE WHEN n % 7 = 0 THEN 'Customer ' || n || E' said: "charged twice, again"\r\nand asked for a refund.'
            ELSE 'Customer ' || n || ' was charged twice and wants a refund.' END,
       'en', 'fill-model', 'v1', 100 + n % 50, 20 + n % 10, 0.0001 * (n % 10), received_at
FROM c, LATERAL (SELECT substr(external_id, 6)::int AS n) AS k,
     LATERAL (SELECT ($4::text[])[1 + n % cardinality($4::text[])] AS sentiment, ((n % 201) - 100) / 100.0 AS score) AS s0,
     LATERAL (SELECT s0.sentiment,
                     CASE s0.sentiment WHEN 'positive' THEN abs(s0.score) * 0.95 + 0.05 WHEN 'negative' THEN -abs(s0.score) * 0.95 - 0.05
                                       ELSE s0.score * 0.35 END AS score) AS s
`

/** The parameters of FILL_INSIGHTS_SQL. */
export const fillInsightsParams = (first: number, count: number, newest: Date) => [
  first,
  count,
  newest.toISOString(),
  [...SENTIMENTS],
  [...COMMON_TOPICS],
  [...INTENTS],
  [...URGENCIES]
]
