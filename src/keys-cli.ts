// npm run keys -- create --name N --scopes ingest,read [--tier free|pro|enterprise] [--producer P] [--url URL]
// npm run keys -- list [--url URL]
// npm run keys -- revoke <id or prefix> [--url URL]
//
// Without --url the CLI opens the database itself (DATABASE_URL, or the PGlite folder in
// DATA_DIR). A PGlite folder is one process's at a time, so while `npm start` runs on it,
// use --url: the CLI then asks that server (the admin routes under /api/v1/keys) with the
// admin key in GLEANER_ADMIN_KEY. The key is read from the environment, not a flag, so it
// never shows in `ps` or the shell history.
//
// A new key is printed once, alone on the last line of standard output, so scripts can
// capture it (`KEY=$(npm run -s keys -- create ... | tail -n1)`).
import { parseArgs } from 'node:util'
import { type Config, ConfigError, loadConfig } from './config.ts'
import { apiKeysRepository } from './db/api-keys.ts'
import { openDatabase } from './db/client.ts'
import { DataDirLockedError } from './db/data-dir-lock.ts'
import { SCOPES, type Scope, TIERS, type Tier } from './domain.ts'
import { createLogger } from './logger.ts'

const usage = `usage:
  npm run keys -- create --name NAME --scopes ${SCOPES.join(',')} [--tier ${TIERS.join('|')}] [--producer P] [--url URL]
  npm run keys -- list [--url URL]
  npm run keys -- revoke <id or prefix> [--url URL]
with --url, the admin key is read from GLEANER_ADMIN_KEY; --producer names an existing
producer (when rotating a key, its predecessor's, shown by list) so re-posts stay duplicates`

// sysexits.h: what went wrong, for scripts
const EX_USAGE = 64
const EX_UNAVAILABLE = 69
const EX_SOFTWARE = 70
const EX_TEMPFAIL = 75
const EX_NOPERM = 77
const EX_CONFIG = 78

interface KeyView {
  id: string
  prefix: string
  name: string
  scopes: string[]
  tier: string
  producer: string
  createdAt: string
  revokedAt: string | null
}

type KeyInput = { name: string; scopes: Scope[]; tier: Tier; producer?: string }

/** What the commands need: the database itself, or a running server's admin routes. */
interface KeyStore {
  create(input: KeyInput): Promise<{ key: string; id: string }>
  list(): Promise<KeyView[]>
  revoke(idOrPrefix: string): Promise<number>
  close(): Promise<void>
}

/** A failure the CLI explains in one line and an exit code, without a stack trace. */
class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number
  ) {
    super(message)
  }
}

const shellQuote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`)

/** Where this configuration's server listens, as a client on the same machine reaches it. */
function serverUrl(config: Config): string {
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST
  return `http://${host}:${config.PORT}`
}

async function databaseStore(config: Config): Promise<KeyStore> {
  // logs go to stderr: stdout carries only what scripts read
  const logger = createLogger(config, process.stderr)
  let database: Awaited<ReturnType<typeof openDatabase>>
  try {
    database = await openDatabase(config, logger)
  } catch (err) {
    if (err instanceof DataDirLockedError) {
      throw new CliError(
        [
          `The embedded database in ${err.dataDir} is in use by process ${err.pid} (the server, usually): PGlite can be opened by one process at a time.`,
          'While the server runs, manage keys through it, with a key that has the admin scope (the server printed one at its first start):',
          `  GLEANER_ADMIN_KEY=gln_... npm run keys -- ${process.argv.slice(2).map(shellQuote).join(' ')} --url ${serverUrl(config)}`,
          '(--url is where the server listens: its HOST and PORT)',
          'Or stop the server, then run the same command again.'
        ].join('\n'),
        EX_TEMPFAIL
      )
    }
    throw err
  }
  const repo = apiKeysRepository(database)
  return {
    async create(input) {
      const { key, record } = await repo.create(input)
      logger.warn(
        { audit: 'key_created', key_id: record.id, key_prefix: record.prefix, scopes: record.scopes, tier: record.tier, producer: record.producer },
        'API key created'
      )
      return { key, id: record.id }
    },
    async list() {
      return (await repo.list()).map((k) => ({
        ...k,
        createdAt: k.createdAt.toISOString(),
        revokedAt: k.revokedAt ? k.revokedAt.toISOString() : null
      }))
    },
    async revoke(idOrPrefix) {
      const n = await repo.revoke(idOrPrefix)
      logger.warn({ audit: 'key_revoked', target: idOrPrefix, revoked: n }, 'API key revoked')
      return n
    },
    close: () => database.close()
  }
}

function serverStore(base: string, adminKey: string | undefined): KeyStore {
  const call = async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
    let res: Response
    try {
      res = await fetch(new URL(path, base), {
        method,
        headers: {
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(adminKey ? { authorization: `Bearer ${adminKey}` } : {})
        },
        body: body === undefined ? undefined : JSON.stringify(body)
      })
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause
      throw new CliError(`cannot reach ${base}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, EX_UNAVAILABLE)
    }
    const text = await res.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    if (res.ok) return json as T
    const message = (json as { error?: { message?: string } } | undefined)?.error?.message ?? `HTTP ${res.status}`
    if (res.status === 401 || res.status === 403) {
      throw new CliError(`${base} refused: ${message}. Set GLEANER_ADMIN_KEY to a key with the admin scope.`, EX_NOPERM)
    }
    throw new CliError(`${base} answered ${res.status}: ${message}`, res.status < 500 ? EX_USAGE : EX_UNAVAILABLE)
  }
  return {
    async create(input) {
      const r = await call<{ id: string; key: string }>('POST', '/api/v1/keys', input)
      return { key: r.key, id: r.id }
    },
    async list() {
      const r = await call<{ items: (Omit<KeyView, 'createdAt' | 'revokedAt'> & { created_at: string; revoked_at: string | null })[] }>(
        'GET',
        '/api/v1/keys'
      )
      return r.items.map(({ created_at, revoked_at, ...k }) => ({ ...k, createdAt: created_at, revokedAt: revoked_at }))
    },
    async revoke(idOrPrefix) {
      return (await call<{ revoked: number }>('POST', `/api/v1/keys/${encodeURIComponent(idOrPrefix)}/revoke`)).revoked
    },
    close: async () => {}
  }
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      scopes: { type: 'string' },
      tier: { type: 'string', default: 'free' },
      producer: { type: 'string' },
      url: { type: 'string' }
    }
  })
  const [command, arg] = positionals
  if (!command || !['create', 'list', 'revoke'].includes(command)) {
    console.error(usage)
    return EX_USAGE
  }
  let input: KeyInput | undefined
  if (command === 'create') {
    const scopes = (values.scopes ?? '').split(',').map((s) => s.trim()).filter(Boolean)
    const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s))
    if (!values.name || scopes.length === 0 || bad.length) {
      console.error(bad.length ? `unknown scope(s): ${bad.join(', ')}; use ${SCOPES.join(', ')}` : usage)
      return EX_USAGE
    }
    if (!(TIERS as readonly string[]).includes(values.tier!)) {
      console.error(`unknown tier ${values.tier}; use ${TIERS.join(', ')}`)
      return EX_USAGE
    }
    if (values.producer !== undefined && !/^[A-Za-z0-9._:-]{1,100}$/.test(values.producer)) {
      console.error('--producer must be 1 to 100 letters, digits or . _ : -')
      return EX_USAGE
    }
    input = { name: values.name, scopes: scopes as Scope[], tier: values.tier as Tier, ...(values.producer ? { producer: values.producer } : {}) }
  }
  if (command === 'revoke' && !arg) {
    console.error(usage)
    return EX_USAGE
  }

  let store: KeyStore
  if (values.url) {
    // the one environment variable read outside config.ts: a client-side secret of this CLI, not server configuration
    store = serverStore(values.url, process.env.GLEANER_ADMIN_KEY || undefined)
  } else {
    let config: Config
    try {
      config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' })
    } catch (err) {
      if (err instanceof ConfigError) {
        console.error(err.message)
        return EX_CONFIG
      }
      throw err
    }
    store = await databaseStore(config)
  }
  try {
    if (input) {
      const { key, id } = await store.create(input)
      console.log(`created key ${id} (${input.name}, scopes ${input.scopes.join(',')}, tier ${input.tier}); it is shown once:`)
      console.log(key)
      return 0
    }
    if (command === 'list') {
      for (const k of await store.list()) {
        console.log(
          [k.id, k.prefix, k.name, k.scopes.join(','), k.tier, `producer ${k.producer || "''"}`, k.createdAt, k.revokedAt ? `revoked ${k.revokedAt}` : 'active'].join('\t')
        )
      }
      return 0
    }
    const n = await store.revoke(arg!)
    console.log(n ? `revoked ${n} key(s); running instances stop accepting it within KEY_CACHE_TTL_MS` : 'no active key matched')
    return n ? 0 : 1
  } finally {
    await store.close()
  }
}

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (err) {
  if (err instanceof CliError) {
    console.error(err.message)
    process.exitCode = err.exitCode
  } else {
    console.error(`keys: ${(err as Error)?.message ?? String(err)}`)
    process.exitCode = EX_SOFTWARE
  }
}
