// npm run bench: Gleaner's figures as ratios to ceilings measured in the same run, on the
// same machine. Starts what it needs (the server on PostgreSQL when DATABASE_URL is set,
// else PGlite; the fake model server), prints a table, writes loadtest/results/<date>.json.
// The rows are a typed list in bench/rows.ts; processes (port 0, readiness that checks who
// answers) in bench/processes.ts; databases in bench/targets.ts.
//
//   BENCH_SECONDS (10)  seconds per load row      BENCH_DRAIN (50000)  local drain backlog
//   BENCH_MODEL_DRAIN (20000) fake-model backlog   BENCH_RSS (100000)   backlog for peak RSS
//   BENCH_ROWS (all)    comma-separated row ids   BENCH_OUT            where the JSON goes
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { pinLoadGenerator, pinned, ROOT } from './bench/processes.ts'
import { type BenchSettings, type Results, ROWS } from './bench/rows.ts'
import { PG_ADMIN } from './bench/targets.ts'

const env = process.env
const settings: BenchSettings = {
  seconds: Number(env.BENCH_SECONDS ?? 10),
  drainN: Number(env.BENCH_DRAIN ?? 50_000),
  modelDrainN: Number(env.BENCH_MODEL_DRAIN ?? 20_000),
  rssN: Number(env.BENCH_RSS ?? 100_000)
}

async function main() {
  pinLoadGenerator()
  const started = Date.now()
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, pinned, database: PG_ADMIN ? 'postgresql' : 'pglite' }
  console.error('[bench] machine', machine)
  // rows to run: BENCH_ROWS=1,3 runs only those (the test suite's smoke does)
  const only = env.BENCH_ROWS?.split(',').map((x) => x.trim())
  const unknown = only?.filter((id) => !ROWS.some((r) => r.id === id)) ?? []
  if (unknown.length) throw new Error(`unknown BENCH_ROWS ${unknown.join(', ')}; rows are ${ROWS.map((r) => r.id).join(', ')}`)
  const rows: Partial<Results> = {}
  for (const row of ROWS) if (!only || only.includes(row.id)) Object.assign(rows, await row.run(settings, rows))

  const result = { date: new Date().toISOString(), seconds: settings.seconds, machine, rows, durationS: (Date.now() - started) / 1000 }
  const outDir = env.BENCH_OUT ?? join(ROOT, 'loadtest/results')
  mkdirSync(outDir, { recursive: true })
  const file = join(outDir, `${result.date.slice(0, 19).replace(/:/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`)
  console.log(table(result))
  console.log(`\nwritten ${file} in ${Math.round(result.durationS)} s`)
}

function table(r: { date: string; machine: { cpus: number; cpu: string; node: string; database: string; pinned: boolean }; rows: Partial<Results> }): string {
  const lines = [
    `Gleaner bench ${r.date.slice(0, 10)} — ${r.machine.cpus} × ${r.machine.cpu}, Node ${r.machine.node}, ${r.machine.database}${r.machine.pinned ? ', server and load generator pinned to different cores' : ''}`,
    '',
    '| # | measure | figure | ratio |',
    '|---|---|---|---|',
    ...ROWS.flatMap((row) => row.table(r.rows))
  ]
  const x = r.rows
  const loads = [x.single?.c50, x.single?.c100, x.batch?.b100, x.batch?.b1000].filter((l) => l !== undefined)
  const errs = loads.reduce((a, l) => a + l.non2xx + l.errors, 0)
  if (errs) lines.push('', `note: ${errs} non-2xx or failed requests during ingest rows`)
  return lines.join('\n')
}

await main()
