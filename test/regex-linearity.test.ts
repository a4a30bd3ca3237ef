// Every regular expression literal in src/ is checked by recheck, a ReDoS analyser (automaton
// analysis plus seeded fuzzing): a new regex is covered the day it is written, with nothing
// to register. Client text reaches most of them (prefilter, normalise, the local analyzer,
// the answer parser, PII masking, validation). recheck's own matcher is not V8's, so its
// verdict is confirmed where it matters: its attack string (or, when it cannot finish, a set
// of adversarial strings) is run through V8 at n and 4n; work growing much faster than 4x
// fails the test.

import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { type AttackPattern, checkSync } from 'recheck'
import t from 'tap'
import ts from 'typescript'
import { BUILT_REGEXES } from '../src/analyzers/local.ts'

const SRC = join(import.meta.dirname, '..', 'src')
/** Per regex; the largest alternations take a few seconds on an idle machine. */
const RECHECK_TIMEOUT_MS = 10_000
/** Linear work grows 4x from n to 4n, quadratic 16x; the slack absorbs a busy machine. */
const MAX_GROWTH = 9
const PUMPS = 2_000
/** Below this a run is too short to time, and too short to freeze anything. */
const NEGLIGIBLE_MS = 15
/** Strings that make backtracking patterns try every split, when recheck offers none. */
const UNITS = ['@', 'a@a.', '.', '\n', ' ', '\t', '. ', 'http://', '```', '{', '"', '\\', 'a', '1 ', '-', "can't ", 'c\u0000', 'Hi ', 'my name is A']

/** Super-linear but fed only configuration, never client text: `file:/pattern/` → why. */
const NOT_CLIENT_TEXT: Record<string, string> = {
  'tracing.ts:/\\/+$/': 'trims the configured OTLP endpoint URL',
  'analyzers/model-transport.ts:/\\/+$/': 'trims the configured model base URL'
}

interface Literal {
  file: string
  line: number
  name: string | undefined
  source: string
  flags: string
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []
  )
}

/** Every `new RegExp(...)` call in src/: each must be one of the regexes the module exports for this test. */
function regexConstructions(): { file: string; line: number }[] {
  const found: { file: string; line: number }[] = []
  for (const path of tsFiles(SRC)) {
    const file = relative(SRC, path)
    const sf = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true)
    const visit = (node: ts.Node): void => {
      if ((ts.isNewExpression(node) || ts.isCallExpression(node)) && ts.isIdentifier(node.expression) && node.expression.text === 'RegExp') {
        found.push({ file, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 })
      }
      ts.forEachChild(node, visit)
    }
    visit(sf)
  }
  return found
}

function regexLiterals(): Literal[] {
  const found: Literal[] = []
  for (const path of tsFiles(SRC)) {
    const file = relative(SRC, path)
    const sf = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true)
    const visit = (node: ts.Node): void => {
      if (node.kind === ts.SyntaxKind.RegularExpressionLiteral) {
        const text = node.getText(sf)
        const slash = text.lastIndexOf('/')
        const parent = node.parent
        const name = ts.isVariableDeclaration(parent) && ts.isIdentifier(parent.name) ? parent.name.text : undefined
        found.push({ file, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, name, source: text.slice(1, slash), flags: text.slice(slash + 1) })
      }
      ts.forEachChild(node, visit)
    }
    visit(sf)
  }
  return found
}

// the literals, and the regexes the local analyzer builds from its word lists at load time
const literals = [
  ...regexLiterals(),
  ...Object.entries(BUILT_REGEXES).map(([name, re]) => ({ file: 'analyzers/local.ts', line: 0, name, source: re.source, flags: re.flags }))
]

t.test('every regex built at run time is one the analyzer exports for this test', async (t) => {
  const built = regexConstructions()
  t.ok(
    built.every((b) => b.file === 'analyzers/local.ts'),
    `built only in analyzers/local.ts: ${JSON.stringify(built)}`
  )
  t.ok(Object.keys(BUILT_REGEXES).length >= 4, 'the question openers and the courtesy words')
  // two builders (sentence openers, whole words), each called for every exported regex
  t.equal(built.length, 2, 'two builders in src/: the question openers and the courtesy words')
})

t.test('the inventory finds the regexes that see client text', async (t) => {
  const names = new Set(literals.map((l) => `${l.file}:${l.name}`))
  for (const expected of [
    'pipeline/prefilter.ts:URL_RE',
    'pipeline/prefilter.ts:PUNCT_RE',
    'analyzers/local.ts:WH_QUESTION_RE',
    'analyzers/local.ts:SUPPORT_QUESTION_RE',
    'analyzers/local.ts:THANKS_RE',
    'analyzers/local.ts:GRATITUDE_RE',
    'analyzers/local.ts:SELF_NAME_RE'
  ]) {
    t.ok(names.has(expected), expected)
  }
  t.ok(literals.length > 50, `${literals.length} literals`)
})

function fastestMs(run: () => unknown): number {
  let best = Number.POSITIVE_INFINITY
  for (let i = 0; i < 3; i++) {
    const started = process.hrtime.bigint()
    run()
    best = Math.min(best, Number(process.hrtime.bigint() - started) / 1e6)
  }
  return best
}

/** How V8's time on `input(n)` grows from n to 4n, or undefined when both are negligible. */
function growth(re: RegExp, input: (n: number) => string): { small: number; large: number; ratio: number } | undefined {
  // replace runs a global regex over the whole string and a sticky-free one once, as the code does
  const small = fastestMs(() => input(PUMPS).replace(re, ''))
  const large = fastestMs(() => input(PUMPS * 4).replace(re, ''))
  return large < NEGLIGIBLE_MS ? undefined : { small, large, ratio: large / Math.max(small, 0.05) }
}

const fromAttack = (attack: AttackPattern) => (n: number) => attack.pumps.map((p) => p.prefix + p.pump.repeat(n)).join('') + attack.suffix
const fromUnit = (unit: string) => (n: number) => unit.repeat(n)

t.test('every regex in src/ that can see client text runs in linear time in V8', async (t) => {
  for (const lit of literals) {
    const where = `${lit.file}:${lit.line} /${lit.source}/${lit.flags}`
    if (NOT_CLIENT_TEXT[`${lit.file}:/${lit.source}/`]) continue
    const re = new RegExp(lit.source, lit.flags)
    const result = checkSync(lit.source, lit.flags, { timeout: RECHECK_TIMEOUT_MS, randomSeed: 1 })
    if (result.status === 'safe') {
      t.pass(`${where}: ${result.complexity.summary}`)
      continue
    }
    const inputs = result.status === 'vulnerable' ? [fromAttack(result.attack)] : UNITS.map(fromUnit)
    const worst = inputs.map((input) => growth(re, input)).reduce((a, b) => ((b?.ratio ?? 0) > (a?.ratio ?? 0) ? b : a), undefined)
    const said = result.status === 'vulnerable' ? `recheck: ${result.complexity.summary}, attack ${result.attack.pattern}` : `recheck: ${result.error.kind}`
    t.ok(
      worst === undefined || worst.ratio < MAX_GROWTH,
      `${where} (${said}); V8 ${worst ? `${worst.small.toFixed(1)} ms → ${worst.large.toFixed(1)} ms` : 'negligible'}`
    )
  }
})

t.test('the exemptions name regexes that still exist', async (t) => {
  const keys = new Set(literals.map((l) => `${l.file}:/${l.source}/`))
  for (const key of Object.keys(NOT_CLIENT_TEXT)) t.ok(keys.has(key), key)
})
