// The JSON body parser. Fastify's own parser (JSON.parse, then secure-json-parse's scan) has no
// bound on nesting or width, so a 14 MB batch nested 7M deep, or metadata with 1.3M keys,
// blocked the event loop for 15–30 s before any schema could refuse it. One linear pass over
// the text rejects such shapes at the first offending byte; only then is the text parsed.
// Hand-written because the streaming JSON parsers on npm bound neither depth nor width, and
// this pass is 40 lines with no allocation per value.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import secureJson from 'secure-json-parse'
import type { Config } from '../config.ts'
import { AppError, badRequest } from '../errors.ts'

export interface JsonShapeLimits {
  maxDepth: number
  maxKeysPerObject: number
  maxItemsPerArray: number
}

/**
 * Limits no honest body reaches, derived from the contract: the deepest body is a batch
 * (envelope, list, conversation, metadata) holding metadata at its own depth limit, plus slack
 * so the schema, not this pass, names a moderately deep field; the widest object is metadata
 * of METADATA_MAX_BYTES made of the shortest members (`"":0,` is 5 bytes); the longest array
 * is a batch, a transcript, or metadata of one-byte items.
 */
export function jsonShapeLimits(config: Pick<Config, 'METADATA_MAX_DEPTH' | 'METADATA_MAX_BYTES' | 'BATCH_MAX_ITEMS' | 'MAX_MESSAGES'>): JsonShapeLimits {
  return {
    maxDepth: config.METADATA_MAX_DEPTH + 8,
    maxKeysPerObject: Math.ceil(config.METADATA_MAX_BYTES / 5) + 16,
    maxItemsPerArray: Math.max(config.BATCH_MAX_ITEMS, config.MAX_MESSAGES, Math.ceil(config.METADATA_MAX_BYTES / 2))
  }
}

const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c
const QUOTE = 0x22
const BACKSLASH = 0x5c

/**
 * The first way `text` exceeds the limits, or undefined. Counts separators per open
 * container outside strings; malformed JSON is left for the parser to describe.
 */
export function jsonShapeViolation(text: string, limits: JsonShapeLimits): string | undefined {
  const separators = new Int32Array(limits.maxDepth + 2)
  const isObject = new Uint8Array(limits.maxDepth + 2)
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
      continue
    }
    if (c === QUOTE) inString = true
    else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++
      if (depth > limits.maxDepth) return `JSON nested deeper than ${limits.maxDepth} levels`
      separators[depth] = 0
      isObject[depth] = c === OPEN_OBJECT ? 1 : 0
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      if (depth > 0) depth--
    } else if (c === COMMA && depth > 0) {
      const members = ++separators[depth]! + 1
      if (isObject[depth] && members > limits.maxKeysPerObject) return `a JSON object has more than ${limits.maxKeysPerObject} keys`
      if (!isObject[depth] && members > limits.maxItemsPerArray) return `a JSON array has more than ${limits.maxItemsPerArray} items`
    }
  }
  return undefined
}

export default fp(
  async (app: FastifyInstance, opts: { config: Config }) => {
    const limits = jsonShapeLimits(opts.config)
    app.removeContentTypeParser('application/json')
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
      const text = body as string
      if (text.length === 0) return done(badRequest('request body is empty but content-type is application/json'), undefined)
      const violation = jsonShapeViolation(text, limits)
      if (violation) return done(badRequest(violation), undefined)
      try {
        // prototype poisoning is refused, as Fastify's own parser does by default
        done(null, secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' }))
      } catch (err) {
        done(new AppError('BAD_REQUEST', `malformed JSON: ${(err as Error).message}`.slice(0, 300), { cause: err }), undefined)
      }
    })
  },
  { name: 'json-body' }
)
