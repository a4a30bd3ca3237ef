-- Insights written before the closed intent taxonomy (prompt v1 let a model answer any
-- label) are mapped onto it, so ?intent= filters and counts mean the same for every insight.
-- The mapping is the domain's synonym list as of this migration (src/domain.ts); labels it
-- does not know become 'other'. Rows already on the taxonomy are not touched.
UPDATE "insights" AS i
SET "intent" = coalesce(m.intent, 'other')
FROM (SELECT conversation_id, trim(both '_' from regexp_replace(lower(trim("intent")), '[[:space:]._/-]+', '_', 'g')) AS key
      FROM "insights"
      WHERE "intent" NOT IN ('refund_request', 'cancellation', 'account_help', 'bug_report', 'complaint', 'purchase', 'feature_request', 'question', 'praise', 'other')) AS k
LEFT JOIN (VALUES
  ('refund_request', 'refund_request'),
  ('cancellation', 'cancellation'),
  ('account_help', 'account_help'),
  ('bug_report', 'bug_report'),
  ('complaint', 'complaint'),
  ('purchase', 'purchase'),
  ('feature_request', 'feature_request'),
  ('question', 'question'),
  ('praise', 'praise'),
  ('other', 'other'),
  ('refund', 'refund_request'),
  ('request_refund', 'refund_request'),
  ('refund_inquiry', 'refund_request'),
  ('money_back', 'refund_request'),
  ('reimbursement', 'refund_request'),
  ('chargeback', 'refund_request'),
  ('return_and_refund', 'refund_request'),
  ('cancel', 'cancellation'),
  ('cancel_order', 'cancellation'),
  ('cancel_subscription', 'cancellation'),
  ('cancel_account', 'cancellation'),
  ('close_account', 'cancellation'),
  ('delete_account', 'cancellation'),
  ('unsubscribe', 'cancellation'),
  ('termination', 'cancellation'),
  ('account', 'account_help'),
  ('account_access', 'account_help'),
  ('account_issue', 'account_help'),
  ('account_support', 'account_help'),
  ('login', 'account_help'),
  ('login_issue', 'account_help'),
  ('login_problem', 'account_help'),
  ('password_reset', 'account_help'),
  ('reset_password', 'account_help'),
  ('recover_password', 'account_help'),
  ('bug', 'bug_report'),
  ('error', 'bug_report'),
  ('technical_issue', 'bug_report'),
  ('technical_problem', 'bug_report'),
  ('technical_support', 'bug_report'),
  ('tech_support', 'bug_report'),
  ('outage', 'bug_report'),
  ('service_outage', 'bug_report'),
  ('malfunction', 'bug_report'),
  ('complain', 'complaint'),
  ('negative_feedback', 'complaint'),
  ('dissatisfaction', 'complaint'),
  ('buy', 'purchase'),
  ('order', 'purchase'),
  ('place_order', 'purchase'),
  ('sales', 'purchase'),
  ('sales_inquiry', 'purchase'),
  ('pricing', 'purchase'),
  ('pricing_inquiry', 'purchase'),
  ('upgrade', 'purchase'),
  ('feature', 'feature_request'),
  ('suggestion', 'feature_request'),
  ('enhancement', 'feature_request'),
  ('improvement', 'feature_request'),
  ('inquiry', 'question'),
  ('enquiry', 'question'),
  ('information', 'question'),
  ('information_request', 'question'),
  ('general_inquiry', 'question'),
  ('how_to', 'question'),
  ('status_inquiry', 'question'),
  ('order_status', 'question'),
  ('compliment', 'praise'),
  ('positive_feedback', 'praise'),
  ('thanks', 'praise'),
  ('gratitude', 'praise'),
  ('greeting', 'other'),
  ('spam', 'other'),
  ('unknown', 'other'),
  ('none', 'other')
) AS m(key, intent) ON m.key = k.key
WHERE i.conversation_id = k.conversation_id;
--> statement-breakpoint
-- Cached v1 answers with such labels would be copied onto new insights as they are: the
-- cache is only a saving, so they are dropped rather than rewritten inside their JSON.
DELETE FROM "analysis_cache"
WHERE "insight"->>'intent' NOT IN ('refund_request', 'cancellation', 'account_help', 'bug_report', 'complaint', 'purchase', 'feature_request', 'question', 'praise', 'other');
