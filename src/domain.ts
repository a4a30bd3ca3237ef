// The domain, defined once: roles, statuses, the insight's labels and their meaning (the
// taxonomy), and the insight's shape. The database schema, the routes and their OpenAPI
// document, the presenters, the local analyzer, the model prompt and the answer parser all
// derive from this file, so a label added or renamed here is added or renamed everywhere.
// Definitions are written for two readers at once: an analyst reading the docs and a model
// reading the prompt, so they are short, concrete and say what does NOT count.
import { type Static, Type } from 'typebox'

// string enums as JSON Schema `enum`: compact in OpenAPI and typed as a union of literals
export const literals = <const T extends readonly string[]>(values: T) => Type.Enum<[...T]>(values)

// ---------------------------------------------------------------------------------------
// Conversations

export const ROLES = ['user', 'assistant', 'system', 'agent', 'tool'] as const
export type Role = (typeof ROLES)[number]
/** The customer. Their words decide sentiment, intent and urgency. */
export const CUSTOMER_ROLES: ReadonlySet<Role> = new Set(['user'])
/** The business side: agents and bots. Context for the outcome, never the customer's mood. */
export const AGENT_ROLES: ReadonlySet<Role> = new Set(['assistant', 'agent'])
/** Plumbing (instructions to a bot, tool output): never analysed, never sent to a model. */
export const IGNORED_ROLES: ReadonlySet<Role> = new Set(['system', 'tool'])

/**
 * One message as stored and analysed. The ingest route adds the configured size limits to
 * this schema; responses and the OpenAPI document use it as is.
 */
export const MessageSchema = Type.Object(
  {
    role: literals(ROLES),
    content: Type.String(),
    at: Type.Optional(Type.String({ format: 'date-time' }))
  },
  { additionalProperties: false }
)
export type Message = Static<typeof MessageSchema>

export const CONVERSATION_STATUSES = ['pending', 'processing', 'analyzed', 'skipped', 'failed'] as const
export type ConversationStatus = (typeof CONVERSATION_STATUSES)[number]
/** What ingest stores: the prefilter's verdict, taken once and kept (the worker never re-judges). */
export const INGEST_STATUSES = ['pending', 'skipped'] as const satisfies readonly ConversationStatus[]
export type IngestStatus = (typeof INGEST_STATUSES)[number]
/**
 * Statuses that still hold work or need an operator: the states of a conversation's row in
 * the work queue (conversation_queue), counted for the backlog gauge and /health.
 */
export const BACKLOG_STATUSES = ['pending', 'processing', 'failed'] as const satisfies readonly ConversationStatus[]
export type BacklogStatus = (typeof BACKLOG_STATUSES)[number]
export const QUEUE_STATES = BACKLOG_STATUSES
export type QueueState = BacklogStatus

// ---------------------------------------------------------------------------------------
// API keys: what a key may do (scopes) and which limits it gets (tiers; the limits per
// tier are configuration, see tierLimits in config.ts).

export const SCOPES = ['ingest', 'read', 'admin'] as const
export type Scope = (typeof SCOPES)[number]
export const TIERS = ['free', 'pro', 'enterprise'] as const
export type Tier = (typeof TIERS)[number]

// ---------------------------------------------------------------------------------------
// Sentiment: the customer's feeling over the whole conversation.

export const SENTIMENTS = ['positive', 'neutral', 'negative', 'mixed'] as const
export type Sentiment = (typeof SENTIMENTS)[number]

export const SENTIMENT_DEFINITIONS: Readonly<Record<Sentiment, string>> = {
  positive: 'the customer is pleased overall: satisfied, grateful for real help, happy with the outcome',
  negative:
    'the customer is unhappy, frustrated or angry overall; politeness, a closing "thanks" or a polite agent do not change it, and sarcasm ("great job 🙄") is negative',
  neutral: 'no clear feeling either way: a plain question, request or report stated factually',
  mixed:
    'both clearly present: praise for one thing and a complaint about another, or a real problem that ends truly resolved to the customer\'s satisfaction'
}

/**
 * The score a label may carry. A label and a score that disagree (positive at -0.6) are
 * brought into agreement by clamping the score into its label's band: the label is the
 * model's decision, the score only its strength.
 */
export const SENTIMENT_SCORE_BANDS: Readonly<Record<Sentiment, readonly [min: number, max: number]>> = {
  positive: [0.05, 1],
  negative: [-1, -0.05],
  neutral: [-0.35, 0.35],
  mixed: [-0.6, 0.6]
}

/** Clamps a score into [-1, 1] and into its label's band; reports whether it had to move. */
export function consistentScore(sentiment: Sentiment, score: number): { score: number; adjusted: boolean } {
  const [min, max] = SENTIMENT_SCORE_BANDS[sentiment]
  const finite = Number.isFinite(score) ? score : 0
  const clamped = Math.min(max, Math.max(min, finite))
  return { score: clamped, adjusted: clamped !== score }
}

// ---------------------------------------------------------------------------------------
// Urgency: how soon someone should act.

export const URGENCIES = ['low', 'medium', 'high'] as const
export type Urgency = (typeof URGENCIES)[number]

export const URGENCY_RUBRIC: Readonly<Record<Urgency, string>> = {
  high:
    'act today: security or fraud (hacked account, stolen card, unauthorised charges), money lost or charged twice, the service down or unusable, a stated deadline or time pressure, or a threat to leave, sue, dispute the charge or go public',
  medium: 'a real problem or complaint that needs a reply but has none of the high signals: a malfunction, a delay, a wrong item, a billing question about a mistake',
  low: 'no problem waiting: questions, requests, suggestions, feedback and praise'
}

// ---------------------------------------------------------------------------------------
// Intent: what the customer wants. A closed list: `?intent=` filters and counts must mean
// the same whichever analyzer or model produced an insight.

export const INTENTS = [
  'refund_request',
  'cancellation',
  'account_help',
  'bug_report',
  'complaint',
  'purchase',
  'feature_request',
  'question',
  'praise',
  'other'
] as const
export type Intent = (typeof INTENTS)[number]

export const INTENT_DEFINITIONS: Readonly<Record<Intent, string>> = {
  refund_request: 'wants money back: a refund, reimbursement or reversal of a charge, for an order, a fee or a subscription',
  cancellation: 'wants to cancel or end something: an order, a subscription, a booking, a plan, a card or the account itself',
  account_help:
    'cannot get into or manage their account: login, password, two-factor or verification codes, a locked or suspended account, changing account details',
  bug_report: 'something does not work as it should: an error, a crash, a failed payment or transfer, a feature or service that is broken or down',
  complaint: 'is dissatisfied (service, delay, quality, a charge, a person) and says so, without one of the more specific requests above',
  purchase: 'wants to buy, order, upgrade or top up, or asks about prices, plans or availability before buying',
  feature_request: 'asks for something the product does not do yet, or suggests an improvement',
  question: 'asks how something works or for information (status, policy, how to), with no problem or dissatisfaction',
  praise: 'the main point is thanks or satisfaction',
  other: 'none of these: greetings only, spam, off-topic or unclear'
}

/**
 * When several intents fit, the first in this order wins: what someone must act on, and
 * the more specific request, before the general mood. This is the order of INTENTS.
 */
export const INTENT_PRECEDENCE: readonly Intent[] = INTENTS

/**
 * Labels models and other taxonomies use for our intents, in the normalised form
 * `normalizeIntent` compares (lower case, words joined by "_"). Anything unknown becomes `other`.
 */
export const INTENT_SYNONYMS: Readonly<Record<string, Intent>> = {
  refund: 'refund_request',
  request_refund: 'refund_request',
  refund_inquiry: 'refund_request',
  money_back: 'refund_request',
  reimbursement: 'refund_request',
  chargeback: 'refund_request',
  return_and_refund: 'refund_request',
  cancel: 'cancellation',
  cancel_order: 'cancellation',
  cancel_subscription: 'cancellation',
  cancel_account: 'cancellation',
  close_account: 'cancellation',
  delete_account: 'cancellation',
  unsubscribe: 'cancellation',
  termination: 'cancellation',
  account: 'account_help',
  account_access: 'account_help',
  account_issue: 'account_help',
  account_support: 'account_help',
  login: 'account_help',
  login_issue: 'account_help',
  login_problem: 'account_help',
  password_reset: 'account_help',
  reset_password: 'account_help',
  recover_password: 'account_help',
  bug: 'bug_report',
  error: 'bug_report',
  technical_issue: 'bug_report',
  technical_problem: 'bug_report',
  technical_support: 'bug_report',
  tech_support: 'bug_report',
  outage: 'bug_report',
  service_outage: 'bug_report',
  malfunction: 'bug_report',
  complain: 'complaint',
  negative_feedback: 'complaint',
  dissatisfaction: 'complaint',
  buy: 'purchase',
  order: 'purchase',
  place_order: 'purchase',
  sales: 'purchase',
  sales_inquiry: 'purchase',
  pricing: 'purchase',
  pricing_inquiry: 'purchase',
  upgrade: 'purchase',
  feature: 'feature_request',
  suggestion: 'feature_request',
  enhancement: 'feature_request',
  improvement: 'feature_request',
  inquiry: 'question',
  enquiry: 'question',
  information: 'question',
  information_request: 'question',
  general_inquiry: 'question',
  how_to: 'question',
  status_inquiry: 'question',
  order_status: 'question',
  compliment: 'praise',
  positive_feedback: 'praise',
  thanks: 'praise',
  gratitude: 'praise',
  greeting: 'other',
  spam: 'other',
  unknown: 'other',
  none: 'other'
}

const INTENT_SET: ReadonlySet<string> = new Set(INTENTS)

/** Lower case, any run of spaces, hyphens or dots as one "_"; bounded so a long label costs nothing. */
function labelKey(label: string): string {
  let out = ''
  let gap = false
  const s = label.slice(0, 80).trim().toLowerCase()
  for (const ch of s) {
    if (ch === ' ' || ch === '-' || ch === '_' || ch === '.' || ch === '/' || ch === '\t') {
      gap = out.length > 0
      continue
    }
    if (gap) out += '_'
    out += ch
    gap = false
  }
  return out
}

/**
 * Maps any label onto the taxonomy: exact names in any case or spacing ("Refund Request",
 * "bug-report"), known synonyms, and everything else to `other` (counted by the caller, so
 * a model that invents labels shows up in metrics instead of in filters).
 */
export function normalizeIntent(label: unknown): { intent: Intent; known: boolean } {
  if (typeof label !== 'string') return { intent: 'other', known: false }
  const key = labelKey(label)
  if (INTENT_SET.has(key)) return { intent: key as Intent, known: true }
  const synonym = INTENT_SYNONYMS[key]
  if (synonym) return { intent: synonym, known: true }
  return { intent: 'other', known: false }
}

// ---------------------------------------------------------------------------------------
// Topics: what the conversation is about, for counting and filtering.

export const TOPIC_RULES = {
  maxTopics: 10,
  maxWords: 3,
  maxChars: 40,
  guidance:
    '1 to 3 topics, each 1-3 lower-case English words naming the subject (a product area or a problem), most important first; never a person\'s name, a handle, an email, a number, an order or account id, or a filler word'
} as const

/**
 * Topics the local analyzer knows (its lexicon uses only these) and a model should prefer
 * when one fits, so counts from both agree. Others are allowed: support teams have their
 * own subjects.
 */
export const COMMON_TOPICS = [
  'billing',
  'invoice',
  'refund',
  'payment',
  'pricing',
  'subscription',
  'cancellation',
  'account',
  'login',
  'password',
  'security',
  'fraud',
  'privacy',
  'bug',
  'crash',
  'performance',
  'outage',
  'connectivity',
  'internet',
  'mobile network',
  'streaming',
  'delivery',
  'shipping',
  'order',
  'return',
  'travel',
  'flight',
  'luggage',
  'booking',
  'games',
  'battery',
  'device',
  'app',
  'card',
  'transfer',
  'cash withdrawal',
  'exchange rate',
  'top up',
  'feature request',
  'integration',
  'api',
  'onboarding',
  'documentation',
  'support'
] as const

// ---------------------------------------------------------------------------------------
// Summary

export const SUMMARY_RULES = {
  maxChars: 280,
  guidance:
    'one or two plain sentences a support lead would write in a list view: the customer\'s problem or request first, then the outcome if there is one; no names, handles, emails, phone numbers, card, order or account numbers, no links'
} as const

// ---------------------------------------------------------------------------------------
// The insight

/** What an analyzer produces for one conversation (the contract's insight, minus bookkeeping). */
export const InsightFieldsSchema = Type.Object(
  {
    sentiment: literals(SENTIMENTS),
    sentiment_score: Type.Number({ minimum: -1, maximum: 1 }),
    topics: Type.Array(Type.String({ minLength: 1, maxLength: TOPIC_RULES.maxChars }), { maxItems: TOPIC_RULES.maxTopics }),
    intent: literals(INTENTS),
    urgency: literals(URGENCIES),
    summary: Type.String({ minLength: 1 }),
    language: Type.String({ description: 'ISO 639-1 where known, "und" otherwise' })
  },
  { additionalProperties: false }
)
export type InsightFields = Static<typeof InsightFieldsSchema>

/** The insight as the API serves it. */
export const InsightSchema = Type.Object({
  conversation_id: Type.String(),
  source: Type.String(),
  ...InsightFieldsSchema.properties,
  model: Type.String(),
  prompt_version: Type.String(),
  cached: Type.Boolean(),
  tokens: Type.Object({ input: Type.Integer(), output: Type.Integer() }),
  cost_usd: Type.Number(),
  created_at: Type.String({ format: 'date-time' })
})
export type Insight = Static<typeof InsightSchema>

const INSIGHT_FIELD_NAMES = Object.keys(InsightFieldsSchema.properties) as (keyof InsightFields)[]

/**
 * Exactly the insight's fields of `source` (a stored row, a cached or a fresh insight),
 * nothing else: the one place that walks the field list, so no caller writes it out again.
 */
export function pickInsightFields(source: InsightFields): InsightFields {
  const out: Record<string, unknown> = {}
  for (const k of INSIGHT_FIELD_NAMES) out[k] = source[k]
  return out as InsightFields
}
