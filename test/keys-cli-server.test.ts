// The keys CLI while `npm start` holds the PGlite folder: a clear message saying what to do,
// and the same commands through the running server (--url, GLEANER_ADMIN_KEY).
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { startServer } from './e2e/server-process.ts'
import { seedDataDir, tempDir } from './helper.ts'

const run = promisify(execFile)
const cli = (env: Record<string, string>, ...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', 'src/keys-cli.ts', ...args], {
    env: { PATH: process.env.PATH, LOG_LEVEL: 'warn', ...env },
    cwd: new URL('..', import.meta.url).pathname
  })

t.test('while the server holds the PGlite folder: a clear message, and the commands work through the server', async (t) => {
  const dataDir = tempDir(t)
  await seedDataDir(dataDir)
  const server = await startServer(t, { DATA_DIR: dataDir, AUTH: 'on', KEY_CACHE_TTL_MS: '0', LOG_LEVEL: 'warn' })
  const adminKey = /gln_[A-Za-z0-9_-]{43}/.exec(server.output())?.[0]
  t.ok(adminKey, 'the server printed its first admin key')
  t.match(server.output(), new RegExp(`--url ${server.base}`), 'and how to create more while it runs')

  const locked = await cli({ DATA_DIR: dataDir }, 'create', '--name', 'my widget', '--scopes', 'ingest').catch((e) => e)
  t.equal(locked.code, 75, 'EX_TEMPFAIL: try again later, or another way')
  t.match(locked.stderr, /in use by process \d+ \(the server, usually\)/)
  t.match(locked.stderr, /GLEANER_ADMIN_KEY=gln_\.\.\. npm run keys -- create --name 'my widget' --scopes ingest --url http:\/\/127\.0\.0\.1:3000/)
  t.notMatch(locked.stderr, /^\s+at /m, 'no stack trace')

  const viaServer = { GLEANER_ADMIN_KEY: adminKey! }
  const created = await cli(viaServer, 'create', '--name', 'widget', '--scopes', 'ingest,read', '--url', server.base)
  const key = created.stdout.trim().split('\n').at(-1)!
  t.match(key, /^gln_[A-Za-z0-9_-]{43}$/, 'the key is alone on the last line, as without --url')
  const read = await fetch(`${server.base}/api/v1/insights`, { headers: { authorization: `Bearer ${key}` } })
  t.equal(read.status, 200, 'the new key works on the running server')
  await read.arrayBuffer()

  const listed = await cli(viaServer, 'list', '--url', server.base)
  t.match(listed.stdout, /\twidget\tingest,read\tfree\t/)
  t.notOk(listed.stdout.includes(key), 'list never shows a key')
  const id = listed.stdout.split('\n').find((l: string) => l.includes('\twidget\t'))!.split('\t')[0]!
  t.match((await cli(viaServer, 'revoke', id, '--url', server.base)).stdout, /revoked 1 key/)
  const refused = await fetch(`${server.base}/api/v1/insights`, { headers: { authorization: `Bearer ${key}` } })
  t.equal(refused.status, 401, 'revoked through the server')
  await refused.arrayBuffer()

  const noKey = await cli({}, 'list', '--url', server.base).catch((e) => e)
  t.equal(noKey.code, 77, 'EX_NOPERM without an admin key')
  t.match(noKey.stderr, /refused: .*GLEANER_ADMIN_KEY/)
  const nobody = await cli(viaServer, 'list', '--url', 'http://127.0.0.1:9').catch((e) => e)
  t.equal(nobody.code, 69, 'EX_UNAVAILABLE when nothing listens there')
  t.match(nobody.stderr, /cannot reach http:\/\/127\.0\.0\.1:9/)
})
