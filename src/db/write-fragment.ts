// A data-modifying statement that another statement can carry as a CTE: writes that belong
// to one batch (its insights, the analysis cache, the model usage) travel in one round trip
// and commit together. PostgreSQL runs a data-modifying CTE exactly once whether or not the
// main query reads it, so the carrier need not select from it.

export interface WriteFragment {
  /** a short name: part of the carrier's prepared-statement name, so each combination is planned once */
  name: string
  /** the statement, with `param(i)` (1-based, over `params`) where a placeholder goes */
  text: (param: (i: number) => string) => string
  params: unknown[]
}

/** The fragment as a statement of its own. */
export function standalone(f: WriteFragment): { text: string; params: unknown[] } {
  return { text: f.text((i) => `$${i}`), params: f.params }
}

/** `, name AS (…)` for each fragment, numbered after the carrier's own `carried` parameters. */
export function asCtes(fragments: readonly WriteFragment[], carried: number): { ctes: string; params: unknown[]; name: string } {
  let offset = carried
  const params: unknown[] = []
  let ctes = ''
  for (const f of fragments) {
    const base = offset
    ctes += `, ${f.name}_w AS (${f.text((i) => `$${base + i}`)})`
    params.push(...f.params)
    offset += f.params.length
  }
  return { ctes, params, name: fragments.map((f) => `_${f.name}`).join('') }
}
