// Database rows → the contract's JSON shapes. One place, so every route speaks the same.

import type { ConversationView } from '../db/conversations.ts'
import type { InsightRow } from '../db/insights.ts'
import { type Insight, pickInsightFields } from '../domain.ts'

export function presentInsight(r: InsightRow): Insight {
  return {
    conversation_id: r.conversationId,
    source: r.source,
    ...pickInsightFields(r),
    model: r.model,
    prompt_version: r.promptVersion,
    cached: r.cached,
    tokens: { input: r.inputTokens, output: r.outputTokens },
    cost_usd: r.costUsd,
    created_at: r.createdAt.toISOString()
  }
}

export function presentConversation(c: ConversationView, insight: InsightRow | null) {
  return {
    id: c.id,
    source: c.source,
    external_id: c.externalId,
    messages: c.messages,
    metadata: c.metadata,
    status: c.status,
    received_at: c.receivedAt.toISOString(),
    analyzed_at: c.analyzedAt ? c.analyzedAt.toISOString() : null,
    attempts: c.attempts,
    skip_reason: c.skipReason,
    insight: insight ? presentInsight(insight) : null
  }
}
