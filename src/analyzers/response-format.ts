// The answer's JSON schema for `response_format`, generated from the insight's TypeBox
// schema in src/domain.ts (the one the parser validates with), so the labels a provider
// is held to and the labels we accept cannot drift apart.
import { Type } from 'typebox'
import { InsightFieldsSchema } from '../domain.ts'

export const RESPONSE_FORMATS = ['json_schema', 'json_object', 'none'] as const
export type ResponseFormat = (typeof RESPONSE_FORMATS)[number]

/** One answered item: the insight's fields and the index of the conversation it is for. */
export const AnswerItemSchema = Type.Object(
  { index: Type.Integer({ minimum: 0 }), ...InsightFieldsSchema.properties },
  { additionalProperties: false }
)
export const AnswerSchema = Type.Object({ insights: Type.Array(AnswerItemSchema) }, { additionalProperties: false })

/**
 * Keywords every provider's strict mode accepts. OpenAI's strict structured outputs reject
 * some validation keywords (string lengths, and bounds on older snapshots), and xAI, vLLM
 * (guided decoding) and Ollama each support a different subset; the parser enforces the
 * bounds anyway, so the schema sent keeps only the shape and the closed label lists.
 */
const PORTABLE_KEYWORDS = new Set(['type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'description'])

/** A plain JSON copy of `schema` with only PORTABLE_KEYWORDS (TypeBox's symbol keys vanish too). */
export function portableSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(portableSchema)
  if (typeof schema !== 'object' || schema === null) return schema
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(schema)) {
    if (!PORTABLE_KEYWORDS.has(key)) continue
    if (key === 'properties') {
      out[key] = Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([name, s]) => [name, portableSchema(s)]))
    } else out[key] = key === 'items' ? portableSchema(value) : value
  }
  // TypeBox writes a string enum as a bare `enum`; strict modes want its type spelled out
  if (Array.isArray(out.enum) && out.type === undefined && out.enum.every((v) => typeof v === 'string')) out.type = 'string'
  return out
}

/** The `response_format` member of a chat request for MODEL_RESPONSE_FORMAT; undefined for none. */
export function responseFormatFor(format: ResponseFormat): Record<string, unknown> | undefined {
  switch (format) {
    case 'json_schema':
      return { type: 'json_schema', json_schema: { name: 'insights', strict: true, schema: portableSchema(AnswerSchema) } }
    case 'json_object':
      return { type: 'json_object' }
    case 'none':
      return undefined
  }
}
