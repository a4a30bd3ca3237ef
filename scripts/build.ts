// `npm start` runs compiled JavaScript, not the TypeScript loader: tsx keeps its transform
// machinery and per-module source maps alive for the life of the process (~50 MB of the
// service's resident memory at import). Tests, `npm run dev` and the CLIs still use tsx.
//
// esbuild transpiles each file of src/ to the same place under dist/ (so every path the code
// resolves from import.meta.url, such as ../../migrations, still lands where it did) and
// leaves every import external, rewriting our own `./x.ts` to `./x.js`. No type check here:
// `npm run typecheck` (in `npm test`) owns that. ~0.3 s, so it runs before every start.
import { cpSync, existsSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { build, type Plugin } from 'esbuild'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SRC = `${ROOT}src`
const DIST = `${ROOT}dist`
/** Files the code reads at run time, beside the modules that read them. */
const ASSETS = ['console', 'analyzers/models']

const keepImportsExternal: Plugin = {
  name: 'keep-imports-external',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) =>
      args.kind === 'entry-point' ? undefined : { path: args.path.startsWith('.') ? args.path.replace(/\.ts$/, '.js') : args.path, external: true }
    )
  }
}

/** The modules of src/ that are built, relative to it: every .ts file outside the console's static files. */
export const sourceModules = (): string[] => readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') && !f.startsWith('console/'))

/**
 * Builds src/ into `outDir`, which must sit directly in the repository root as dist/ does
 * (the benches build into a folder of their own, so two of them never share one).
 *
 * The tree is built aside and then renamed into place: a second `npm start` in the same
 * checkout rebuilds while the first may still be importing its modules, and must never
 * leave it a half-written or missing file for longer than the two renames.
 */
let builds = 0
export async function buildDist(outDir = DIST): Promise<void> {
  const tag = `${process.pid}-${++builds}`
  const staging = `${outDir}.staging-${tag}`
  const old = `${outDir}.old-${tag}`
  // bundle: true only so that the plugin sees every import; each one is left external
  await build({
    entryPoints: sourceModules().map((f) => `${SRC}/${f}`),
    outdir: staging,
    outbase: SRC,
    bundle: true,
    plugins: [keepImportsExternal],
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning'
  })
  for (const dir of ASSETS) cpSync(`${SRC}/${dir}`, `${staging}/${dir}`, { recursive: true })
  try {
    if (existsSync(outDir)) renameSync(outDir, old)
    renameSync(staging, outDir)
  } catch (err) {
    // another build renamed its tree in between: it is complete and built from the same sources
    if (!['ENOTEMPTY', 'EEXIST', 'ENOENT'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err
    rmSync(staging, { recursive: true, force: true })
  }
  rmSync(old, { recursive: true, force: true })
}

/** How node runs `script`: compiled JavaScript as it is, TypeScript through the tsx loader. */
export const nodeArgsFor = (script: string): string[] => (script.endsWith('.ts') ? ['--import', 'tsx', script] : [script])

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await buildDist()
