// A frozen copy of the local analyzer as it was before the trained models (model
// local-lexicon-v1, prompt v1), kept only so `npm run eval` can show old and new side by
// side on the same dev splits. Not used by the service.

// The embedded analyzer: wink-nlp's English model for sentences, parts of speech and
// sentiment, tinyld for the language, and a hand-written lexicon and rules for topics,
// intent and urgency. It costs nothing and answers the same for the same text, so it is
// the default provider and the baseline the model client is compared with.
//
// Which text counts: the user's messages are the "primary" text (topics, intent, urgency,
// summary, language, most of the sentiment); assistant and agent messages only nudge the
// sentiment. System and tool messages are ignored. A conversation where the user said
// nothing falls back to the assistant/agent text as primary, so it still gets a summary.

import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import type { ItsFunction, WinkMethods } from 'wink-nlp'
import { type AnalysisInput, type Analyzer, type BatchResult, type ItemResult, ModelCallError } from '../src/analyzers/analyzer.ts'
import type { InsightFields, Intent, Message, Sentiment, Urgency } from '../src/domain.ts'

export const LOCAL_MODEL = 'local-lexicon-v1'
export const LOCAL_PROMPT_VERSION = 'v1'


/**
 * Analysed text per conversation is capped at 20,000 characters (16,000 primary, 4,000
 * secondary) so the worst case stays near 10 ms whatever the producer sends (the contract
 * allows 500 messages of 32,000 characters); the head of a conversation is where the
 * customer states the problem, so cutting the tail loses little.
 */
const MAX_PRIMARY_CHARS = 16_000
const MAX_SECONDARY_CHARS = 4_000
/** The contract's summary is meant for list views; 280 fits one line of a dashboard. */
const SUMMARY_MAX_CHARS = 280
const SUMMARY_SENTENCES = 2
const MAX_TOPICS = 10
/** Frequent nouns are noisier than lexicon hits; a few are enough to name what the lexicon misses. */
const MAX_NOUN_TOPICS = 5
/** tinyld costs ~3 µs per character; two or three sentences are enough for a confident guess. */
const LANGUAGE_SAMPLE_CHARS = 160
/** Assistant and agent sentiment is mostly politeness ("sorry about that"): it may nudge, not decide. */
const SECONDARY_SENTIMENT_WEIGHT = 0.2
const LABEL_THRESHOLD = 0.15
/** A sentence this polar is "clearly" positive or negative for the mixed label. */
const CLEAR_SENTENCE_POLARITY = 0.3
/** Mixed needs the weaker side to carry at least a third of the stronger: one kind word in a rant is still negative. */
const MIXED_MIN_RATIO = 1 / 3
const HIGH_URGENCY_SCORE = -0.4
const HIGH_URGENCY_EXCLAMATIONS = 3
/** Give the event loop a turn this often, so a big batch never stalls HTTP for long. */
const YIELD_EVERY_MS = 10

// ---------------------------------------------------------------------------------------
// Topic lexicon. Keywords are base forms: a token matches through its lemma, its normal
// form, or its normal form without a plural "s". Two-word keywords match adjacent words.
// A few common non-English words for the money topics let a French or Spanish invoice
// complaint still be filed under billing.

const TOPIC_LEXICON: ReadonlyArray<readonly [topic: string, keywords: readonly string[]]> = [
  ['billing', ['bill', 'billing', 'charge', 'overcharge', 'fee', 'statement', 'receipt', 'invoice', 'facture', 'factura', 'rechnung', 'fattura', 'fatura']],
  ['invoice', ['invoice', 'facture', 'factura', 'rechnung', 'fattura', 'fatura']],
  ['refund', ['refund', 'reimburse', 'reimbursement', 'money back', 'remboursement', 'reembolso', 'rückerstattung', 'erstattung', 'rimborso']],
  ['payment', ['payment', 'pay', 'card', 'credit card', 'debit card', 'paypal', 'transaction', 'paiement', 'pago', 'zahlung', 'pagamento']],
  ['pricing', ['price', 'pricing', 'cost', 'expensive', 'discount', 'coupon', 'quote', 'how much', 'prix', 'precio', 'preis', 'prezzo', 'preço']],
  ['subscription', ['subscription', 'subscribe', 'plan', 'renewal', 'renew', 'upgrade', 'downgrade', 'trial', 'membership', 'abonnement', 'suscripción']],
  ['cancellation', ['cancel', 'cancellation', 'unsubscribe', 'terminate', 'termination']],
  ['login', ['login', 'log in', 'sign in', 'signin', 'logon', '2fa', 'otp', 'locked out', 'lockout', 'verification code']],
  ['account', ['account', 'profile', 'username', 'compte', 'cuenta', 'konto', 'conta']],
  ['password', ['password', 'passcode', 'passwort', 'contraseña', 'senha']],
  ['bug', ['bug', 'buggy', 'error', 'glitch', 'broken', 'defect', 'malfunction', 'not work']],
  ['crash', ['crash', 'freeze', 'frozen']],
  ['performance', ['slow', 'slowness', 'lag', 'laggy', 'latency', 'performance', 'timeout', 'sluggish']],
  ['shipping', ['ship', 'shipping', 'shipment', 'courier', 'tracking', 'carrier', 'dispatch', 'envío']],
  ['delivery', ['deliver', 'delivery', 'package', 'parcel', 'arrive', 'arrival', 'livraison', 'entrega', 'lieferung', 'consegna']],
  ['order', ['order', 'purchase', 'checkout', 'cart', 'commande', 'pedido', 'bestellung', 'ordine']],
  ['return', ['return', 'rma', 'send back']],
  ['feature request', ['feature', 'feature request', 'suggestion', 'roadmap', 'wishlist']],
  ['integration', ['integration', 'integrate', 'plugin', 'webhook', 'zapier', 'slack', 'salesforce', 'hubspot', 'shopify', 'connector']],
  ['api', ['api', 'endpoint', 'sdk', 'rate limit', 'api key', 'webhook']],
  ['security', ['security', 'breach', 'hack', 'hacker', 'phishing', 'fraud', 'fraudulent', 'vulnerability', 'compromise', 'malware']],
  ['privacy', ['privacy', 'gdpr', 'ccpa', 'personal data', 'consent', 'cookie']],
  ['onboarding', ['onboarding', 'onboard', 'setup', 'set up', 'getting started', 'tutorial', 'install', 'installation', 'walkthrough']],
  ['support', ['support', 'agent', 'representative', 'customer service', 'help desk', 'helpdesk', 'ticket']],
  ['documentation', ['documentation', 'docs', 'doc', 'manual', 'guide', 'faq', 'knowledge base']],
  ['outage', ['outage', 'downtime']]
]

/** Words that are keywords only as nouns ("my plan" is a subscription, "I plan to" is not). */
const NOUN_ONLY_KEYWORDS = new Set(['plan', 'support', 'guide', 'doc', 'feature', 'quote', 'cost', 'ticket', 'agent'])
/** Idioms that would otherwise read as topics: "in order to", "in return", "in charge". */
const NOT_AFTER_IN = new Set(['order', 'return', 'charge'])

function buildLexicon() {
  const words = new Map<string, string[]>()
  const phrases = new Map<string, string[]>()
  const phraseHeads = new Set<string>()
  for (const [topic, keywords] of TOPIC_LEXICON) {
    for (const keyword of keywords) {
      const space = keyword.indexOf(' ')
      const target = space === -1 ? words : phrases
      if (space !== -1) phraseHeads.add(keyword.slice(0, space))
      const topics = target.get(keyword) ?? []
      if (!topics.includes(topic)) topics.push(topic)
      target.set(keyword, topics)
    }
  }
  return { words, phrases, phraseHeads }
}
const LEXICON = buildLexicon()

/** Nouns too common in support chats to say what a conversation is about. */
const GENERIC_NOUNS = new Set(
  (
    'thing time day week month year today tomorrow yesterday way lot bit something anything everything nothing ' +
    'someone anyone everyone people person guy hi hello hey thanks thank please sir madam team question problem ' +
    'issue help minute hour moment morning afternoon evening night yes ok okay kind sort number information info ' +
    'detail case reason point part matter stuff side end start idea fact hope sorry regards cheers dear name word ' +
    'message reply response answer app application product service company business customer user one lol'
  ).split(' ')
)
/** Content-free words: a sentence made only of these and stop words is courtesy, not opinion. */
const COURTESY_WORDS = new Set(
  'thanks thank thx ty please pls hi hello hey cheers regards appreciate appreciated sorry apologies apologize welcome bye goodbye'.split(' ')
)
const GREETINGS = new Set(['hi', 'hello', 'hey', 'dear', 'thanks', 'thank', 'cheers', 'regards'])

// ---------------------------------------------------------------------------------------
// Rules over the lower-cased primary text (curly apostrophes straightened).
//
// Intent precedence, first match wins; the order puts what an analyst must act on, and
// the more specific request, before the general mood:
//   refund_request > cancellation > account_help > bug_report > feature_request >
//   complaint (words, or negative sentiment) > purchase > question > praise (positive
//   sentiment) > other.
// account_help comes before bug_report because "I can't log in, it shows an error" is an
// access problem first; its patterns name access failures only, so a crash at login is
// still a bug report.

const REFUND_RE = /\b(refund\w*|money back|reimburs\w*|(give|send|pay) me back)\b/
const CANCELLATION_RE =
  /\b(cancel\w*|unsubscrib\w*|terminat\w* (my|the|our)|(close|delete|deactivate) (my|our|the) account|(end|stop) (my|our|the) (subscription|plan|membership|contract))\b/
const ACCOUNT_HELP_RE =
  /\b((can'?t|cannot|can not|unable to|couldn'?t|could not|won'?t let me) (log ?in|login|sign ?in|(access|get into) (my|our|the) (account|profile|dashboard))|lock(ed)? (me )?out|(forgot|forgotten|reset|change|recover|lost) (my |the )?password|password reset|2fa|two[- ]factor|verification code|one[- ]time (code|password)|otp|(change|update) (my |the )?(email|e-mail|username|user name|phone number)|account (access|locked|suspended|disabled|blocked))\b/
const BUG_RE =
  /\b(bugs?|buggy|crash\w*|errors?|glitch\w*|broken|outages?|(is|are|was|were|went) down|(not|never|stopped|isn'?t|aren'?t|doesn'?t|don'?t|won'?t|didn'?t) work(s|ing|ed)?|fail(s|ed|ing|ure)?|freez\w*|frozen|exception|stack ?trace)\b/
const FEATURE_REQUEST_RE =
  /\b(feature requests?|would be (nice|great|helpful|awesome|useful|cool)|would love (it|to see|if)|(please|could you|can you|would you) (add|support|implement|include)|add (an? |the )?(option|feature|ability|setting|way)|i wish|wish (it|you|there)|suggestions?|suggest\w*|any plans? (to|for)|on (the|your) roadmap)\b/
const COMPLAINT_RE =
  /\b(unacceptable|terrible|awful|horrible|horrendous|disappoint\w*|frustrat\w*|ridiculous|worst|complain\w*|overcharg\w*|wrong|rude|useless|scam|angry|furious|upset|not happy|unhappy|poor (service|quality|support)|waste of|never again|fed up|sick of|charged twice|double[- ]charged|unauthori[sz]ed|never (ordered|received|authori[sz]ed|arrived|got)|(didn'?t|did not) (order|receive|authori[sz]e)|still (waiting|hasn'?t|haven'?t|not))\b/
const PURCHASE_RE =
  /\b((want|like|looking|planning|ready|going) to (buy|purchase|order|upgrade|subscribe)|where (can|do) i buy|place an? order|pricing|prices?|quote|how much|upgrade to|sign up for|in stock)\b/
const QUESTION_RE = /\?|(^|[.!\n]\s*)(how|what|when|where|why|who|which)\b|\b(is it possible|is there a way|i was wondering|can you tell me|could you tell me)\b/

/** High urgency: time pressure, outages, lost access, security, legal or payment disputes. */
const HIGH_URGENCY_RE =
  /\b(urgent\w*|asap|a\.s\.a\.p|immediately|emergency|outages?|(is|are|was|were|been|went|still|completely|totally|entirely|everything|site|server|servers|service|app|system|website|platform) down|down (for everyone|again|since)|(can'?t|cannot|can not|unable to|couldn'?t|could not) access|security (breach|incident)|breach(ed)?|hacked|compromised|legal\w*|lawyers?|attorneys?|sue|suing|lawsuit|court|chargebacks?|charge back|fraud\w*)\b/

const CURLY_APOSTROPHE_RE = /[\u2018\u2019]/g
const WHITESPACE_RE = /\s+/g
const NON_SPACE_RE = /\S/
const LETTER_RE = /\p{L}/u
/** Any letter outside ASCII a-z: the English shortcut must not fire on accented or non-Latin text. */
const NON_ASCII_LETTER_RE = /[^\P{L}a-zA-Z]/u
const NON_LATIN_LETTER_RE = /[^\P{L}\p{Script=Latin}]/u
const TOPIC_WORD_RE = /^\p{L}[\p{L}\p{M}\p{N}'-]*$/u
const ISO_639_1_RE = /^[a-z]{2}$/
const LONE_SURROGATE_RE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
const SURROGATE_RE = /[\uD800-\uDFFF]/

// ---------------------------------------------------------------------------------------
// Engines: loaded once per process on first use. Loading the wink model takes ~100 ms and
// tinyld's profiles are half a megabyte, so a service running the model client never pays.

interface Engines {
  nlp: WinkMethods
  detect: (text: string) => string
}

let engines: Promise<Engines> | undefined

function loadEngines(): Promise<Engines> {
  engines ??= (async () => {
    const [wink, model, tinyld] = await Promise.all([import('wink-nlp'), import('wink-eng-lite-web-model'), import('tinyld')])
    // NER is left out of the pipe: nothing here uses entities and it is a third of the cost.
    return { nlp: wink.default(model.default, ['sbd', 'negation', 'sentiment', 'pos']), detect: tinyld.detect }
  })().catch((err: unknown) => {
    engines = undefined // let the next call try again rather than caching the failure
    throw new ModelCallError('error', `local analyzer could not load its models: ${(err as Error).message}`)
  })
  return engines
}

// ---------------------------------------------------------------------------------------

interface Texts {
  primary: string
  secondary: string
  firstPrimary: string | undefined
  firstAny: string | undefined
}

function collectTexts(messages: readonly Message[]): Texts {
  let user = ''
  let other = ''
  let firstUser: string | undefined
  let firstOther: string | undefined
  let firstAny: string | undefined
  for (const m of messages) {
    const content = typeof m?.content === 'string' ? m.content : ''
    if (!NON_SPACE_RE.test(content)) continue
    firstAny ??= content
    if (m.role === 'user') {
      firstUser ??= content
      if (user.length < MAX_PRIMARY_CHARS) user = user ? `${user}\n\n${content}` : content
    } else if (m.role === 'assistant' || m.role === 'agent') {
      firstOther ??= content
      if (other.length < MAX_PRIMARY_CHARS) other = other ? `${other}\n\n${content}` : content
    }
  }
  if (user) {
    return {
      primary: wellFormed(user.slice(0, MAX_PRIMARY_CHARS)),
      secondary: wellFormed(other.slice(0, MAX_SECONDARY_CHARS)),
      firstPrimary: firstUser,
      firstAny
    }
  }
  return { primary: wellFormed(other.slice(0, MAX_PRIMARY_CHARS)), secondary: '', firstPrimary: firstOther, firstAny }
}

/** Lone surrogates (and a pair split by the cap) become U+FFFD: the summary is stored and served as JSON. */
function wellFormed(s: string): string {
  return SURROGATE_RE.test(s) ? s.replace(LONE_SURROGATE_RE, '\uFFFD') : s
}

interface PrimaryAnalysis {
  score: number
  mixed: boolean
  lexiconTopics: Map<string, number>
  nounCounts: Map<string, number>
  words: number
  stopWords: number
  summary: string | undefined
}

/**
 * Reads the primary text once. Token properties are fetched as whole arrays because wink's
 * per-token accessors cost about six times as much, which matters at thousands of conversations a second.
 */
function analysePrimary(nlp: WinkMethods, text: string): PrimaryAnalysis {
  const its = nlp.its
  const doc = nlp.readDoc(text)
  const tokens = doc.tokens()
  // wink types `out` loosely (T[] | string[]); these its-functions return these element types.
  const normals = tokens.out(its.normal) as string[]
  // its.lemma's declared signature does not match ItsFunction's (a typings slip in wink-nlp 2.4)
  const lemmas = tokens.out(its.lemma as unknown as ItsFunction<string>) as string[]
  const pos = tokens.out(its.pos) as string[]
  const types = tokens.out(its.type) as string[]
  const stops = tokens.out(its.stopWordFlag) as boolean[]
  const sentences = doc.sentences()
  const spans = sentences.out(its.span) as unknown as number[][]
  const sentiments = sentences.out(its.sentiment) as number[]
  const sentenceCount = spans.length

  const sentenceHits = new Array<number>(sentenceCount).fill(0)
  const sentenceWords = new Array<number>(sentenceCount).fill(0)
  const sentenceContent = new Array<number>(sentenceCount).fill(0)
  const lexiconTopics = new Map<string, number>()
  const nounCounts = new Map<string, number>()
  let words = 0
  let stopWords = 0
  let prevNormal = ''
  let prevLemma = ''
  let s = 0

  for (let i = 0; i < normals.length; i++) {
    while (s < sentenceCount - 1 && i > spans[s]![1]!) s++
    const type = types[i]!
    if (type === 'punctuation' || type === 'tabCRLF' || type === 'symbol') {
      prevNormal = ''
      prevLemma = ''
      continue
    }
    const normal = normals[i]!
    const lemma = lemmas[i]!
    const tag = pos[i]!
    const isStop = stops[i]!
    if (type === 'word') {
      words++
      sentenceWords[s]!++
      if (isStop) stopWords++
      else if (!COURTESY_WORDS.has(normal)) sentenceContent[s]!++
    } else if (type === 'emoji' || type === 'emoticon') {
      sentenceContent[s]!++ // an emoji carries opinion; it is not mere courtesy
    }

    const topics = lexiconTopicsOf(normal, lemma, tag, prevNormal, prevLemma, normals[i + 1])
    if (topics) {
      for (const topic of topics) lexiconTopics.set(topic, (lexiconTopics.get(topic) ?? 0) + 1)
      sentenceHits[s]!++
    } else if ((tag === 'NOUN' || tag === 'PROPN') && !isStop) {
      // a proper noun right after a greeting is the addressee's name, not a topic
      const noun = nounForm(normal, lemma, tag)
      if (!(tag === 'PROPN' && GREETINGS.has(prevNormal)) && isTopicWord(noun)) {
        nounCounts.set(noun, (nounCounts.get(noun) ?? 0) + 1)
      }
    }
    prevNormal = normal
    prevLemma = lemma
  }

  // Sentiment: the mean over sentences that carry any, so neutral filler does not dilute a
  // clear complaint; courtesy-only sentences ("Thanks!") count only when nothing else does.
  let polarSum = 0
  let polarCount = 0
  let courtesySum = 0
  let courtesyCount = 0
  let positiveMass = 0
  let negativeMass = 0
  for (let k = 0; k < sentenceCount; k++) {
    const v = sentiments[k] ?? 0
    if (!Number.isFinite(v) || v === 0) continue
    if (sentenceContent[k] === 0) {
      courtesySum += v
      courtesyCount++
      continue
    }
    polarSum += v
    polarCount++
    if (v >= CLEAR_SENTENCE_POLARITY) positiveMass += v
    else if (v <= -CLEAR_SENTENCE_POLARITY) negativeMass -= v
  }
  const score = polarCount ? polarSum / polarCount : courtesyCount ? courtesySum / courtesyCount : 0
  const mixed =
    positiveMass > 0 && negativeMass > 0 && Math.min(positiveMass, negativeMass) / Math.max(positiveMass, negativeMass) >= MIXED_MIN_RATIO

  const summary = extractSummary(sentences.out() as string[], sentiments, sentenceHits, sentenceWords, sentenceContent)
  return { score, mixed, lexiconTopics, nounCounts, words, stopWords, summary }
}

function lexiconTopicsOf(
  normal: string,
  lemma: string,
  tag: string,
  prevNormal: string,
  prevLemma: string,
  nextNormal: string | undefined
): readonly string[] | undefined {
  if (prevNormal && (LEXICON.phraseHeads.has(prevNormal) || LEXICON.phraseHeads.has(prevLemma))) {
    const phrase = LEXICON.phrases.get(`${prevNormal} ${normal}`) ?? LEXICON.phrases.get(`${prevLemma} ${lemma}`)
    if (phrase) return phrase
  }
  let key = lemma
  let topics = LEXICON.words.get(key)
  if (!topics) {
    key = normal
    topics = LEXICON.words.get(key)
  }
  if (!topics && normal.length > 3 && normal.endsWith('s')) {
    key = normal.slice(0, -1)
    topics = LEXICON.words.get(key)
  }
  if (!topics) return undefined
  if (NOUN_ONLY_KEYWORDS.has(key) && tag !== 'NOUN' && tag !== 'PROPN') return undefined
  if (NOT_AFTER_IN.has(key) && prevNormal === 'in') return undefined
  if (key === 'order' && nextNormal === 'to') return undefined
  return topics
}

/**
 * The lemma only where it undoes a regular plural: wink's lemmas of singular nouns can be
 * surprising ("data" becomes "datum", "app" becomes "application").
 */
function nounForm(normal: string, lemma: string, tag: string): string {
  return tag === 'NOUN' && normal.length === lemma.length + 1 && normal.endsWith('s') && normal.startsWith(lemma) ? lemma : normal
}

/** A keyword the lexicon turned down (an idiom, a verb) is not promoted to a noun topic either. */
function isTopicWord(word: string): boolean {
  return (
    word.length >= 3 && word.length <= 32 && !GENERIC_NOUNS.has(word) && !LEXICON.words.has(word) && TOPIC_WORD_RE.test(word)
  )
}

/**
 * Extractive summary: the best one or two sentences, in their original order. A sentence
 * scores for lexicon hits (capped, so one keyword-stuffed line cannot win alone), urgency
 * words and sentiment strength; earlier sentences get a small bonus because customers
 * state the problem first; fragments and pure courtesy are pushed down.
 */
function extractSummary(
  texts: string[],
  sentiments: number[],
  hits: number[],
  words: number[],
  content: number[]
): string | undefined {
  const ranked: { index: number; text: string; score: number }[] = []
  for (let k = 0; k < texts.length; k++) {
    const text = texts[k]!.replace(WHITESPACE_RE, ' ').trim()
    if (!text) continue
    const sentiment = sentiments[k] ?? 0
    let score = Math.min(hits[k] ?? 0, 3) + 1.5 * Math.abs(Number.isFinite(sentiment) ? sentiment : 0) + 0.5 / (1 + k)
    if (HIGH_URGENCY_RE.test(text.toLowerCase())) score += 1
    if ((words[k] ?? 0) < 3) score -= 1
    if (content[k] === 0) score -= 1
    ranked.push({ index: k, text, score })
  }
  if (!ranked.length) return undefined
  ranked.sort((a, b) => b.score - a.score || a.index - b.index)
  const picked = ranked[0]!.text.length >= SUMMARY_MAX_CHARS ? ranked.slice(0, 1) : ranked.slice(0, SUMMARY_SENTENCES)
  picked.sort((a, b) => a.index - b.index)
  return clip(picked.map((p) => p.text).join(' '))
}

/** Cuts at a word boundary and marks the cut with an ellipsis; never splits a surrogate pair. */
function clip(text: string, max = SUMMARY_MAX_CHARS): string {
  if (text.length <= max) return text
  let cut = text.lastIndexOf(' ', max - 1)
  if (cut < max / 2) cut = max - 1 // one very long word: a hard cut beats a stub
  const code = text.charCodeAt(cut - 1)
  if (code >= 0xd800 && code <= 0xdbff) cut--
  return `${text.slice(0, cut).trimEnd()}…`
}

/**
 * tinyld is by far the slowest step (~0.5 ms for a few sentences), so plain-ASCII text
 * whose words are mostly English stop words is called English without asking it. Other
 * languages share few of wink's English stop words (German and Dutch text scores under
 * 0.1), and short texts need a higher ratio because one shared word ("is", "in") weighs more.
 */
function detectLanguage(detect: Engines['detect'], text: string, words: number, stopWords: number): string {
  if (!LETTER_RE.test(text)) return 'und'
  const nonLatin = NON_LATIN_LETTER_RE.test(text)
  // two Latin-script words are a guess, not a language ("Hi Sarah." reads as Indonesian)
  if (!nonLatin && words < 3) return 'und'
  if (words >= 4 && !nonLatin && !NON_ASCII_LETTER_RE.test(text) && stopWords / words >= (words >= 8 ? 0.3 : 0.4)) return 'en'
  let sample = text
  if (sample.length > LANGUAGE_SAMPLE_CHARS) {
    const cut = sample.lastIndexOf(' ', LANGUAGE_SAMPLE_CHARS)
    sample = sample.slice(0, cut > LANGUAGE_SAMPLE_CHARS / 2 ? cut : LANGUAGE_SAMPLE_CHARS)
  }
  const code = detect(sample)
  return ISO_639_1_RE.test(code) ? code : 'und'
}

function rankTopics(lexicon: Map<string, number>, nouns: Map<string, number> | undefined): string[] {
  const byCountThenName = (a: [string, number], b: [string, number]) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
  const topics = [...lexicon].sort(byCountThenName).map(([topic]) => topic)
  if (nouns && topics.length < MAX_TOPICS) {
    let added = 0
    for (const [noun] of [...nouns].sort(byCountThenName)) {
      if (added >= MAX_NOUN_TOPICS || topics.length >= MAX_TOPICS) break
      const topic = noun.toLowerCase()
      if (topics.includes(topic)) continue
      topics.push(topic)
      added++
    }
  }
  return topics.slice(0, MAX_TOPICS)
}

function classifyIntent(lower: string, sentiment: Sentiment): Intent {
  if (REFUND_RE.test(lower)) return 'refund_request'
  if (CANCELLATION_RE.test(lower)) return 'cancellation'
  if (ACCOUNT_HELP_RE.test(lower)) return 'account_help'
  if (BUG_RE.test(lower)) return 'bug_report'
  if (FEATURE_REQUEST_RE.test(lower)) return 'feature_request'
  if (sentiment === 'negative' || COMPLAINT_RE.test(lower)) return 'complaint'
  if (PURCHASE_RE.test(lower)) return 'purchase'
  if (QUESTION_RE.test(lower)) return 'question'
  if (sentiment === 'positive') return 'praise'
  return 'other'
}

/** Mixed counts as negative here: it has at least one clearly unhappy sentence. */
function classifyUrgency(lower: string, sentiment: Sentiment, score: number, intent: Intent): Urgency {
  if (HIGH_URGENCY_RE.test(lower)) return 'high'
  if (score <= HIGH_URGENCY_SCORE && countExclamations(lower) >= HIGH_URGENCY_EXCLAMATIONS) return 'high'
  if (sentiment === 'negative' || sentiment === 'mixed' || intent === 'complaint' || intent === 'bug_report') return 'medium'
  return 'low'
}

function countExclamations(text: string): number {
  let n = 0
  for (let i = text.indexOf('!'); i !== -1; i = text.indexOf('!', i + 1)) n++
  return n
}

const round3 = (x: number) => {
  const r = Math.round(Math.max(-1, Math.min(1, x)) * 1000) / 1000
  return r === 0 ? 0 : r // no -0 in stored JSON
}

function analyzeConversation(nlp: WinkMethods, detect: Engines['detect'], messages: readonly Message[]): InsightFields {
  const texts = collectTexts(Array.isArray(messages) ? messages : [])
  const fallbackSummary = () =>
    clip(wellFormed((texts.firstPrimary ?? texts.firstAny ?? '').slice(0, SUMMARY_MAX_CHARS * 4)).replace(WHITESPACE_RE, ' ').trim()) || '(no text)'
  if (!texts.primary) {
    return {
      sentiment: 'neutral',
      sentiment_score: 0,
      topics: [],
      intent: 'other',
      urgency: 'low',
      summary: fallbackSummary(),
      language: 'und'
    }
  }

  const primary = analysePrimary(nlp, texts.primary)
  let score = primary.score
  if (texts.secondary) {
    const secondary = nlp.readDoc(texts.secondary).out(nlp.its.sentiment) as number
    if (Number.isFinite(secondary)) score = (1 - SECONDARY_SENTIMENT_WEIGHT) * score + SECONDARY_SENTIMENT_WEIGHT * secondary
  }
  const language = detectLanguage(detect, texts.primary, primary.words, primary.stopWords)
  // wink's sentiment lexicon and tagger are English: on other languages they only react to
  // look-alike words ("favor", "die"), and no opinion beats a made-up one
  const english = language === 'en' || language === 'und'
  const sentimentScore = english ? round3(Number.isFinite(score) ? score : 0) : 0
  const sentiment: Sentiment = english && primary.mixed
    ? 'mixed'
    : sentimentScore > LABEL_THRESHOLD
      ? 'positive'
      : sentimentScore < -LABEL_THRESHOLD
        ? 'negative'
        : 'neutral'

  const topics = rankTopics(primary.lexiconTopics, language === 'en' ? primary.nounCounts : undefined)

  const lower = texts.primary.toLowerCase().replace(CURLY_APOSTROPHE_RE, "'")
  const intent = classifyIntent(lower, sentiment)
  const urgency = classifyUrgency(lower, sentiment, sentimentScore, intent)

  return {
    sentiment,
    sentiment_score: sentimentScore,
    topics,
    intent,
    urgency,
    summary: primary.summary || fallbackSummary(),
    language
  }
}

export class BaselineLexiconAnalyzer implements Analyzer {
  readonly model = LOCAL_MODEL
  readonly promptVersion = LOCAL_PROMPT_VERSION
  readonly billable = false

  async analyzeBatch(items: AnalysisInput[], signal?: AbortSignal): Promise<BatchResult> {
    signal?.throwIfAborted()
    const { nlp, detect } = await loadEngines()
    const results: ItemResult[] = []
    let sliceStart = performance.now()
    for (const item of items) {
      if (performance.now() - sliceStart > YIELD_EVERY_MS) {
        await yieldToEventLoop()
        signal?.throwIfAborted()
        sliceStart = performance.now()
      }
      try {
        const insight = analyzeConversation(nlp, detect, item.messages)
        results.push({ id: item.id, ok: true, insight, tokens: { input: 0, output: 0 }, cost_usd: 0 })
      } catch (err) {
        // a bug in the rules, not the input's fault in a way a retry could fix
        results.push({ id: item.id, ok: false, error: `local analysis failed: ${(err as Error)?.message ?? String(err)}`, retryable: false })
      }
    }
    return { results, usage: { input: 0, output: 0, cost_usd: 0, calls: 0 } }
  }

  async ping(): Promise<void> {
    await loadEngines()
  }

  async close(): Promise<void> {
    // the engines are a per-process singleton shared by every instance: nothing to release
  }
}

export function createBaselineAnalyzer(): Analyzer {
  return new BaselineLexiconAnalyzer()
}
