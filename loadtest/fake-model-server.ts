// A fake OpenAI-compatible chat API over real HTTP, for tests and load tests. It reads the
// prompt our client builds (src/analyzers/prompts.ts), answers one insight per conversation,
// and misbehaves on demand the way real providers do: slow, 5xx, 429 with Retry-After,
// hung sockets, JSON wrapped in prose or fences, missing items, missing usage.
// Plain node:http so that what the client meets is a real socket with real framing.
//
// CLI: node --import tsx loadtest/fake-model-server.ts --port 8089 --latency-ms 300
// At runtime, GET /_fake/stats, POST /_fake/behaviour (JSON partial), POST /_fake/reset.
import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { findConversationBlocks } from '../src/analyzers/prompts.ts'

export type Malformation = 'fences' | 'trailing-comma' | 'prose' | 'citations' | 'garbage'

/**
 * How a 200 carries its answer, as real providers send it:
 * - string: `message.content` is a string (OpenAI, xAI, vLLM, Ollama);
 * - parts: `message.content` is an array of `{type: "text", text}` parts (some
 *   OpenAI-compatible gateways and multimodal servers);
 * - reasoning: a string content with `reasoning_content` beside it (xAI's and vLLM's
 *   reasoning models, DeepSeek);
 * - refusal: `content: null` and `message.refusal` (OpenAI structured outputs).
 */
export const ANSWER_SHAPES = ['string', 'parts', 'reasoning', 'refusal'] as const
export type AnswerShape = (typeof ANSWER_SHAPES)[number]

/**
 * The error body of a refused request, per provider (what each documents or sends):
 * OpenAI and Ollama's OpenAI layer {"error": {"message", "type", "param", "code"}};
 * xAI {"code": "<status text>", "error": "<message>"}; vLLM before 0.10
 * {"object": "error", "message", "type", "param", "code": <status>}; Ollama's native API
 * {"error": "<message>"}.
 */
export const ERROR_STYLES = ['openai', 'xai', 'vllm', 'ollama'] as const
export type ErrorStyle = (typeof ERROR_STYLES)[number]

export interface FakeBehaviour {
  /** fixed delay before every answer, errors included */
  latencyMs: number
  /** probability (0..1) that a chat call answers 500; drawn from the seeded PRNG */
  errorRate: number
  /** the next N chat calls answer 500 */
  failNext: number
  /** the next N chat calls answer 429 with Retry-After: retryAfterSeconds */
  rateLimitNext: number
  retryAfterSeconds: number
  /** the next N chat calls answer 400 (a request the provider refuses) */
  badRequestNext: number
  /**
   * a context window, in prompt characters (0: none): a longer prompt is refused with a 400
   * saying the context length was exceeded, in the words OpenAI, xAI and vLLM use
   */
  contextLimitChars: number
  /** chat calls never answer; the socket is held until the client gives up */
  hang: boolean
  /** how to spoil the answer text; null answers clean JSON */
  malformed: Malformation | null
  /** when > 0, `malformed` spoils only that many more answers, then answers are clean again */
  malformedNext: number
  /**
   * drop the last k items of each answer, but never all of them: a one-item request is
   * answered in full, like a model whose long answers are cut short
   */
  partial: number
  /** a conversation whose text contains this is never answered properly */
  poisonMarker: string | null
  /** what a poisoned conversation gets: no item at all, or an item that fails validation */
  poisonAs: 'omit' | 'invalid'
  /** leave the usage object out of answers */
  omitUsage: boolean
  /** when set, any other Authorization than `Bearer <this>` gets 401 */
  requireApiKey: string | null
  /** how a 200 carries its answer */
  shape: AnswerShape
  /** the body of 400 and 401 answers */
  errorStyle: ErrorStyle
  /** answer items without their index field, as some models do */
  omitIndex: boolean
  /** usage reports this many prompt tokens as served from the provider's cache */
  cachedTokens: number
  /**
   * the model's own output cap in tokens (ceil(chars/4)); the request's max_tokens caps
   * too. An answer longer than the cap is cut there with finish_reason "length"
   */
  maxOutputTokens: number | null
}

export interface FakeModelServerOptions extends Partial<FakeBehaviour> {
  port?: number
  host?: string
  /** seed of the PRNG behind errorRate, so a test sees the same failures every run */
  seed?: number
  /** the id listed by GET /v1/models */
  modelName?: string
}

export interface FakeStats {
  /** POST /v1/chat/completions requests received */
  calls: number
  /** answers by HTTP status, chat calls only */
  byStatus: Record<number, number>
  inFlight: number
  maxInFlight: number
  /** insights answered (valid items only) */
  itemsAnalysed: number
  /** conversations seen in prompts, including those answered badly */
  itemsRequested: number
  /** chat calls the client abandoned before the answer (timeouts, aborts) */
  aborted: number
  modelsCalls: number
  /** whether the last chat call carried an Authorization header (never its value) */
  lastAuthorization: boolean
  /** the last chat request body, for asserting what the client sends */
  lastRequest: Record<string, unknown> | null
  /** arrival times (performance.now(), ms) of the last CALL_TIMES_KEPT chat calls, to measure back-off */
  callTimes: number[]
  /** answers cut off at max_tokens (finish_reason "length") */
  truncated: number
}

/**
 * What a test can wait on instead of polling stats or sleeping: 'call' when a chat call
 * arrives (stats already counted), 'answer' with the status just before it is sent (a
 * behaviour set in a listener applies to the next call, never to this one), 'abort' when
 * the client gave up on a call.
 */
export interface FakeEvents {
  call: []
  /** the raw body of every chat request, for tests that check what never reaches a provider */
  request: [body: string]
  answer: [status: number]
  abort: []
}

export interface FakeModelServer {
  /** base URL ending in /v1, as MODEL_BASE_URL expects */
  url: string
  port: number
  stats: FakeStats
  events: EventEmitter<FakeEvents>
  setBehaviour(partial: Partial<FakeBehaviour>): void
  /** zero the stats and restore the behaviour and PRNG seed given at start */
  reset(): void
  close(): Promise<void>
}

const DEFAULT_BEHAVIOUR: FakeBehaviour = {
  latencyMs: 0,
  errorRate: 0,
  failNext: 0,
  rateLimitNext: 0,
  retryAfterSeconds: 1,
  badRequestNext: 0,
  contextLimitChars: 0,
  hang: false,
  malformed: null,
  malformedNext: 0,
  partial: 0,
  poisonMarker: null,
  poisonAs: 'omit',
  omitUsage: false,
  requireApiKey: null,
  shape: 'string',
  errorStyle: 'openai',
  omitIndex: false,
  cachedTokens: 0,
  maxOutputTokens: null
}

/** Enough to inspect the retries of a test; bounded so a long load test does not grow memory. */
const CALL_TIMES_KEPT = 1_000
/** Request bodies larger than this are refused; real providers cap context too. */
const MAX_BODY_BYTES = 32 * 1024 * 1024

/** mulberry32: tiny, seedable, good enough to decide which calls fail. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function emptyStats(): FakeStats {
  return {
    calls: 0,
    byStatus: {},
    inFlight: 0,
    maxInFlight: 0,
    itemsAnalysed: 0,
    itemsRequested: 0,
    aborted: 0,
    modelsCalls: 0,
    lastAuthorization: false,
    lastRequest: null,
    callTimes: [],
    truncated: 0
  }
}

export async function startFakeModelServer(opts: FakeModelServerOptions = {}): Promise<FakeModelServer> {
  const { port = 0, host = '127.0.0.1', seed = 1, modelName = 'fake-1', ...initial } = opts
  const startBehaviour: FakeBehaviour = { ...DEFAULT_BEHAVIOUR, ...initial }
  let behaviour: FakeBehaviour = { ...startBehaviour }
  let random = seededRandom(seed)
  const stats = emptyStats()
  const timers = new Set<NodeJS.Timeout>()
  const events = new EventEmitter<FakeEvents>()
  let completionSeq = 0

  const setBehaviour = (partial: Partial<FakeBehaviour>) => {
    behaviour = { ...behaviour, ...partial }
  }
  const reset = () => {
    Object.assign(stats, emptyStats())
    behaviour = { ...startBehaviour }
    random = seededRandom(seed)
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) sendJson(res, 500, { error: { message: `fake server bug: ${err.message}` } })
      else res.destroy()
    })
  })
  server.keepAliveTimeout = 30_000

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method === 'GET' && path === '/v1/models') {
      stats.modelsCalls++
      req.resume()
      return sendJson(res, 200, { object: 'list', data: [{ id: modelName, object: 'model', owned_by: 'gleaner-fake' }] })
    }
    if (req.method === 'GET' && path === '/_fake/stats') return sendJson(res, 200, stats)
    if (req.method === 'POST' && path === '/_fake/behaviour') {
      const body = parseJson(await readBody(req))
      if (!isRecord(body)) return sendJson(res, 400, { error: { message: 'expected a JSON object' } })
      setBehaviour(body as Partial<FakeBehaviour>)
      return sendJson(res, 200, behaviour)
    }
    if (req.method === 'POST' && path === '/_fake/reset') {
      req.resume()
      reset()
      return sendJson(res, 200, { ok: true })
    }
    if (req.method === 'POST' && path === '/v1/chat/completions') return chatCompletion(req, res)
    req.resume()
    return sendJson(res, 404, { error: { message: `no route ${req.method} ${path}`, type: 'invalid_request_error' } })
  }

  async function chatCompletion(req: IncomingMessage, res: ServerResponse) {
    stats.calls++
    stats.callTimes.push(performance.now())
    if (stats.callTimes.length > CALL_TIMES_KEPT) stats.callTimes.shift()
    stats.inFlight++
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight)
    let done = false
    const finish = () => {
      if (done) return
      done = true
      stats.inFlight--
    }
    res.on('close', () => {
      if (!res.writableFinished) {
        stats.aborted++
        finish()
        events.emit('abort')
      } else finish()
    })
    stats.lastAuthorization = typeof req.headers.authorization === 'string'
    events.emit('call')
    const raw = await readBody(req).catch(() => null)
    if (raw !== null) events.emit('request', raw)
    const body = raw === null ? undefined : parseJson(raw)
    stats.lastRequest = isRecord(body) ? body : null

    if (behaviour.hang) return // the socket stays open until the client aborts or close() runs
    if (behaviour.latencyMs > 0) await delay(behaviour.latencyMs)
    if (res.destroyed) return
    // Read after the delay: a test that changes the behaviour meanwhile means the new one.
    const b = behaviour

    const answer = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1
      events.emit('answer', status)
      sendJson(res, status, payload, headers)
    }
    if (b.requireApiKey !== null && req.headers.authorization !== `Bearer ${b.requireApiKey}`) {
      return answer(401, errorBody(b.errorStyle, 401, 'Incorrect API key provided', 'invalid_api_key'))
    }
    if (b.failNext > 0) {
      behaviour.failNext--
      return answer(500, { error: { message: 'fake internal error', type: 'server_error' } })
    }
    if (b.rateLimitNext > 0) {
      behaviour.rateLimitNext--
      return answer(
        429,
        { error: { message: 'Rate limit reached', type: 'rate_limit_error' } },
        { 'retry-after': String(b.retryAfterSeconds) }
      )
    }
    if (b.badRequestNext > 0) {
      behaviour.badRequestNext--
      return answer(400, errorBody(b.errorStyle, 400, 'fake bad request', null))
    }
    if (b.errorRate > 0 && random() < b.errorRate) {
      return answer(500, { error: { message: 'fake random error', type: 'server_error' } })
    }
    if (!isRecord(body) || !Array.isArray(body.messages)) {
      return answer(400, { error: { message: 'messages is required', type: 'invalid_request_error' } })
    }

    const messages = body.messages.filter(isRecord)
    const prompt = [...messages].reverse().find((m) => m.role === 'user')?.content
    if (b.contextLimitChars > 0 && typeof prompt === 'string' && prompt.length > b.contextLimitChars) {
      const tokens = Math.ceil(prompt.length / 4)
      const limit = Math.ceil(b.contextLimitChars / 4)
      return answer(
        400,
        errorBody(
          b.errorStyle,
          400,
          `This model's maximum context length is ${limit} tokens. However, your messages resulted in ${tokens} tokens. Please reduce the length of the messages.`,
          'context_length_exceeded'
        )
      )
    }
    const conversations = typeof prompt === 'string' ? findConversationBlocks(prompt) : []
    stats.itemsRequested += conversations.length

    let items = conversations.map(({ index, text }) => {
      if (b.poisonMarker !== null && text.includes(b.poisonMarker)) {
        return b.poisonAs === 'invalid' ? { index, sentiment: 'furious', urgency: 'whenever' } : null
      }
      return { index, ...fakeInsight(text) }
    })
    if (b.partial > 0) items = items.slice(0, Math.max(1, items.length - b.partial))
    const kept = items.filter((x): x is NonNullable<typeof x> => x !== null)
    const sent = b.omitIndex ? kept.map(({ index: _index, ...rest }) => rest) : kept

    const malformed = b.malformed
    if (malformed && b.malformedNext > 0 && --behaviour.malformedNext === 0) behaviour.malformed = null
    let content = spoil(JSON.stringify({ insights: sent }, null, 2), malformed)
    const requested = typeof body.max_tokens === 'number' && body.max_tokens > 0 ? body.max_tokens : null
    const cap = Math.min(requested ?? Number.POSITIVE_INFINITY, b.maxOutputTokens ?? Number.POSITIVE_INFINITY)
    const truncated = Math.ceil(content.length / 4) > cap
    if (truncated) content = content.slice(0, cap * 4)
    stats.itemsAnalysed += truncated ? 0 : kept.filter((x) => 'summary' in x).length
    if (truncated) stats.truncated++
    const promptChars = messages.reduce((n, m) => n + (typeof m.content === 'string' ? m.content.length : 0), 0)
    const promptTokens = Math.ceil(promptChars / 4)
    const completionTokens = Math.ceil(content.length / 4)
    const refusal = b.shape === 'refusal'
    answer(200, {
      id: `chatcmpl-fake-${++completionSeq}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: typeof body.model === 'string' ? body.model : modelName,
      choices: [{ index: 0, message: assistantMessage(b.shape, content), finish_reason: truncated ? 'length' : 'stop' }],
      ...(b.omitUsage
        ? {}
        : {
            usage: {
              prompt_tokens: promptTokens,
              completion_tokens: refusal ? 12 : completionTokens,
              total_tokens: promptTokens + (refusal ? 12 : completionTokens),
              ...(b.cachedTokens > 0 ? { prompt_tokens_details: { cached_tokens: Math.min(b.cachedTokens, promptTokens) } } : {})
            }
          })
    })
  }

  function delay(ms: number) {
    return new Promise<void>((done) => {
      const timer = setTimeout(() => {
        timers.delete(timer)
        done()
      }, ms)
      timers.add(timer)
    })
  }

  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(port, host, () => {
      server.off('error', fail)
      ok()
    })
  })
  const bound = (server.address() as AddressInfo).port
  const urlHost = host.includes(':') ? `[${host}]` : host

  return {
    url: `http://${urlHost}:${bound}/v1`,
    port: bound,
    stats,
    events,
    setBehaviour,
    reset,
    async close() {
      for (const t of timers) clearTimeout(t)
      timers.clear()
      // Hung and keep-alive sockets would keep close() waiting for ever.
      server.closeAllConnections()
      await new Promise<void>((done) => server.close(() => done()))
    }
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY_BYTES) {
        fail(new Error('body too large'))
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => ok(Buffer.concat(chunks).toString('utf8')))
    req.on('error', fail)
  })
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function assistantMessage(shape: AnswerShape, content: string): Record<string, unknown> {
  switch (shape) {
    case 'string':
      return { role: 'assistant', content }
    case 'parts': {
      // split in two parts, so a client that reads only the first part loses the answer
      const mid = Math.floor(content.length / 2)
      return {
        role: 'assistant',
        content: [
          { type: 'text', text: content.slice(0, mid) },
          { type: 'text', text: content.slice(mid) }
        ]
      }
    }
    case 'reasoning':
      return {
        role: 'assistant',
        reasoning_content: 'The customer mentions an index [0] and {"insights": []} while I think it over.',
        content
      }
    case 'refusal':
      return { role: 'assistant', content: null, refusal: "I'm sorry, I can't help with that request." }
  }
}

function errorBody(style: ErrorStyle, status: number, message: string, code: string | null): Record<string, unknown> {
  const type = status === 401 ? 'authentication_error' : 'invalid_request_error'
  switch (style) {
    case 'openai':
      return { error: { message, type, param: null, code } }
    case 'xai':
      return { code: 'Client specified an invalid argument', error: message }
    case 'vllm':
      return { object: 'error', message, type: 'BadRequestError', param: null, code: status }
    case 'ollama':
      return { error: message }
  }
}

function sendJson(res: ServerResponse, status: number, payload: unknown, headers: Record<string, string> = {}) {
  if (res.destroyed) return
  const text = JSON.stringify(payload)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

const POSITIVE = ['thank', 'great', 'love', 'happy', 'perfect', 'excellent', 'awesome', 'resolved', 'works now', 'appreciate']
const NEGATIVE = ['angry', 'broken', 'terrible', 'bad', 'wrong', 'not working', 'hate', 'worst', 'cancel', 'fail', 'error', 'refund']
const URGENT = ['urgent', 'asap', 'immediately', 'right now', 'emergency']
const TOPICS: Record<string, string[]> = {
  billing: ['invoice', 'charge', 'billing', 'payment', 'refund', 'price'],
  shipping: ['delivery', 'shipping', 'package', 'parcel', 'tracking'],
  account: ['password', 'login', 'log in', 'account', 'sign in'],
  bug: ['error', 'crash', 'bug', 'broken', 'not working']
}

/** A plausible insight from keywords: deterministic, cheap, and valid by construction. */
export function fakeInsight(text: string) {
  const lower = text.toLowerCase()
  const count = (words: string[]) => words.reduce((n, w) => n + (lower.includes(w) ? 1 : 0), 0)
  const pos = count(POSITIVE)
  const neg = count(NEGATIVE)
  const sentiment = pos > 0 && neg > 0 ? 'mixed' : pos > 0 ? 'positive' : neg > 0 ? 'negative' : 'neutral'
  const score = pos + neg === 0 ? 0 : Math.round(((pos - neg) / (pos + neg)) * 100) / 100
  const topics = Object.entries(TOPICS)
    .filter(([, words]) => words.some((w) => lower.includes(w)))
    .map(([topic]) => topic)
  const firstUser = /\[user\] ([^\n]*)/.exec(text)?.[1] ?? text
  const summary = `Customer writes: ${firstUser.slice(0, 120)}`.trim()
  return {
    sentiment,
    sentiment_score: score,
    topics,
    intent: neg > 0 ? 'complaint' : lower.includes('?') ? 'question' : 'feedback',
    urgency: URGENT.some((w) => lower.includes(w)) ? 'high' : neg > 0 ? 'medium' : 'low',
    summary,
    language: 'en'
  }
}

function spoil(json: string, how: Malformation | null): string {
  switch (how) {
    case null:
      return json
    case 'fences':
      return '```json\n' + json + '\n```'
    case 'prose':
      return `Sure! Here is the analysis you asked for:\n\n${json}\n\nLet me know if you need anything else.`
    case 'trailing-comma':
      // JSON.stringify escapes newlines inside strings, so every "\n<indent>}" is structure.
      return json.replace(/\n(\s*)([}\]])/g, ',\n$1$2')
    case 'citations':
      return json.replace(/^(\s*"summary": ".*")(,?)$/gm, '$1 [1]$2').replace(/\]\n\}$/, ']【2†source】\n}')
    case 'garbage':
      return "I'm sorry, but I can't analyse these conversations right now."
  }
}

function isMain(): boolean {
  const entry = process.argv[1]
  return entry !== undefined && resolve(entry) === fileURLToPath(import.meta.url)
}

if (isMain()) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8089' },
      host: { type: 'string', default: '127.0.0.1' },
      'latency-ms': { type: 'string', default: '0' },
      'error-rate': { type: 'string', default: '0' },
      seed: { type: 'string', default: '1' },
      partial: { type: 'string', default: '0' },
      malformed: { type: 'string' },
      'poison-marker': { type: 'string' },
      'omit-usage': { type: 'boolean', default: false },
      'require-api-key': { type: 'string' },
      'model-name': { type: 'string', default: 'fake-1' }
    }
  })
  const fake = await startFakeModelServer({
    port: Number(values.port),
    host: values.host,
    latencyMs: Number(values['latency-ms']),
    errorRate: Number(values['error-rate']),
    seed: Number(values.seed),
    partial: Number(values.partial),
    malformed: (values.malformed as Malformation | undefined) ?? null,
    poisonMarker: values['poison-marker'] ?? null,
    omitUsage: values['omit-usage'],
    requireApiKey: values['require-api-key'] ?? null,
    modelName: values['model-name']
  })
  process.stdout.write(`fake model server listening on ${fake.url}\n`)
  const stop = () => {
    fake.close().then(() => process.exit(0))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}
