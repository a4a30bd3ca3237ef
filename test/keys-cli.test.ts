// The keys CLI as an operator runs it: create prints the key alone on the last line,
// list shows it without the secret, revoke takes it out of service. (While a server holds
// the PGlite folder: keys-cli-server.test.ts.)
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { backendEnv, backends, tempDir } from './helper.ts'

const run = promisify(execFile)
const cli = (env: Record<string, string>, ...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', 'src/keys-cli.ts', ...args], {
    env: { PATH: process.env.PATH, LOG_LEVEL: 'warn', ...env },
    cwd: new URL('..', import.meta.url).pathname
  })

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const env = await backendEnv(t, backend, { dataDir: tempDir(t) })
    const created = await cli(env, 'create', '--name', 'producer-1', '--scopes', 'ingest,read', '--tier', 'pro')
    const lines = created.stdout.trim().split('\n')
    const key = lines[lines.length - 1]!
    t.match(key, /^gln_[A-Za-z0-9_-]{43}$/, 'the key is alone on the last line')
    t.notMatch(created.stderr, new RegExp(key), 'the key is not in the logs')
    t.match(created.stderr, /"audit":"key_created"/, 'creation is audited')

    const listed = await cli(env, 'list')
    t.match(listed.stdout, /producer-1\tingest,read\tpro/)
    t.notOk(listed.stdout.includes(key), 'list never shows a key')
    const id = listed.stdout.split('\t')[0]!

    const bad = await cli(env, 'create', '--name', 'x', '--scopes', 'root').catch((e) => e)
    t.equal(bad.code, 64, 'unknown scope is a usage error')

    const revoked = await cli(env, 'revoke', id)
    t.match(revoked.stdout, /revoked 1 key/)
    t.match((await cli(env, 'list')).stdout, /revoked 20/)
  })
}
