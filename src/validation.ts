// Validation set-up shared by Fastify's route schemas and the batch route's per-item checks,
// so one conversation is judged the same way on both routes.
import { Ajv, type ErrorObject } from 'ajv'
import addFormatsModule from 'ajv-formats'

// ajv-formats is CommonJS with its function on .default
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default

/** Bodies: no type coercion ("12" is not a number) and unknown fields are errors, not dropped. */
export function createBodyAjv() {
  const ajv = new Ajv({ coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false, strict: false })
  addFormats(ajv)
  return ajv
}

/** Query strings and params arrive as text: coerce them to the schema's types. */
export function createQueryAjv() {
  const ajv = new Ajv({ coerceTypes: true, removeAdditional: false, useDefaults: true, allErrors: false, strict: false })
  addFormats(ajv)
  return ajv
}

/** "/messages/0/content" → "messages[0].content" */
function fieldPath(instancePath: string, prefix?: string): string {
  const parts = instancePath.split('/').filter(Boolean)
  let out = prefix ?? ''
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p
  return out
}

export interface FieldError {
  field: string
  message: string
}

/** AJV errors → field-named errors a client can act on. */
export function describeAjvErrors(errors: ErrorObject[] | null | undefined, prefix?: string): FieldError[] {
  return (errors ?? []).map((e) => {
    const base = fieldPath(e.instancePath, prefix)
    const join = (name: string) => (base ? `${base}.${name}` : name)
    if (e.keyword === 'required') {
      const f = join(String((e.params as { missingProperty: string }).missingProperty))
      return { field: f, message: `${f} is required` }
    }
    if (e.keyword === 'additionalProperties') {
      const f = join(String((e.params as { additionalProperty: string }).additionalProperty))
      return { field: f, message: `${f} is not an allowed field` }
    }
    const f = base || prefix || 'body'
    if (e.keyword === 'enum') {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues
      return { field: f, message: `${f} must be one of ${allowed.join(', ')}` }
    }
    return { field: f, message: `${f} ${e.message ?? 'is invalid'}` }
  })
}
