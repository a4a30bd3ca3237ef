// npm run keys -- create --name N --scopes ingest,read [--tier free|pro|enterprise]
// npm run keys -- list
// npm run keys -- revoke <id or prefix>
// A new key is printed once, alone on the last line of standard output, so scripts can
// capture it (`KEY=$(npm run -s keys -- create ... | tail -n1)`).
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from './config.ts'
import { apiKeysRepository } from './db/api-keys.ts'
import { openDatabase } from './db/client.ts'
import { SCOPES, type Scope, TIERS, type Tier } from './domain.ts'
import { createLogger } from './logger.ts'

const usage = `usage:
  npm run keys -- create --name NAME --scopes ingest,read,admin [--tier free|pro|enterprise]
  npm run keys -- list
  npm run keys -- revoke <id or prefix>`

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { name: { type: 'string' }, scopes: { type: 'string' }, tier: { type: 'string', default: 'free' } }
  })
  const [command, arg] = positionals
  if (!command || !['create', 'list', 'revoke'].includes(command)) {
    console.error(usage)
    return 64
  }
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' })
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message)
      return 78
    }
    throw err
  }
  // logs go to stderr: stdout carries only what scripts read
  const logger = createLogger(config, process.stderr)
  const database = await openDatabase(config, logger)
  try {
    const repo = apiKeysRepository(database)
    if (command === 'create') {
      const scopes = (values.scopes ?? '').split(',').map((s) => s.trim()).filter(Boolean)
      const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s))
      if (!values.name || scopes.length === 0 || bad.length) {
        console.error(bad.length ? `unknown scope(s): ${bad.join(', ')}; use ${SCOPES.join(', ')}` : usage)
        return 64
      }
      if (!(TIERS as readonly string[]).includes(values.tier!)) {
        console.error(`unknown tier ${values.tier}; use ${TIERS.join(', ')}`)
        return 64
      }
      const { key, record } = await repo.create({ name: values.name, scopes: scopes as Scope[], tier: values.tier as Tier })
      logger.warn({ audit: 'key_created', key_id: record.id, key_prefix: record.prefix, scopes, tier: record.tier }, 'API key created')
      console.log(`created key ${record.id} (${record.name}, scopes ${scopes.join(',')}, tier ${record.tier}); it is shown once:`)
      console.log(key)
      return 0
    }
    if (command === 'list') {
      for (const k of await repo.list()) {
        console.log(
          [k.id, k.prefix, k.name, k.scopes.join(','), k.tier, k.createdAt.toISOString(), k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : 'active'].join('\t')
        )
      }
      return 0
    }
    if (!arg) {
      console.error(usage)
      return 64
    }
    const n = await repo.revoke(arg)
    logger.warn({ audit: 'key_revoked', target: arg, revoked: n }, 'API key revoked')
    console.log(n ? `revoked ${n} key(s); running instances stop accepting it within KEY_CACHE_TTL_MS` : 'no active key matched')
    return n ? 0 : 1
  } finally {
    await database.close()
  }
}

process.exitCode = await main(process.argv.slice(2))
