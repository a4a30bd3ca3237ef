// What clients do to the connection itself, over raw sockets: a body trickled in slowly is cut
// at the request timeout, a malformed request is refused in the contract's error shape, and
// a client that hangs up mid-upload is an info-level client event, not a database outage.

import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import pino from 'pino'
import t from 'tap'
import { backendEnv, buildTestApp, listen, waitFor } from '../helper.ts'

type LogLine = { level: number; msg: string; code?: string; err?: unknown }

function capture() {
  const lines: LogLine[] = []
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) })
  return { lines, logger }
}

async function rawSocket(base: string): Promise<{ socket: Socket; received: () => string; closed: Promise<unknown> }> {
  const { port } = new URL(base)
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (chunk) => {
    text += chunk.toString()
  })
  socket.on('error', () => {})
  return { socket, received: () => text, closed: once(socket, 'close') }
}

const HEAD = (length: number) => `POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`
/** A byte this often; the whole body would take TRICKLE_BYTES × this, far past the timeout. */
const TRICKLE_MS = 100
const TRICKLE_BYTES = 600

t.test('a body trickled in byte by byte is cut at the request timeout', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false', REQUEST_TIMEOUT_MS: '1000' })
  const base = await listen(app)
  const { socket, received, closed } = await rawSocket(base)
  socket.write(HEAD(TRICKLE_BYTES))
  let sent = 0
  let open = true
  void closed.then(() => {
    open = false
  })
  while (open && sent < TRICKLE_BYTES) {
    socket.write(' ')
    sent++
    await new Promise((r) => setTimeout(r, TRICKLE_MS))
  }
  t.ok(sent < TRICKLE_BYTES, `the server closed the connection after ${sent} of ${TRICKLE_BYTES} bytes`)
  const answer = received()
  if (answer) {
    t.match(answer, /^HTTP\/1\.1 408/, 'answered 408')
    t.match(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)), { error: { code: 'REQUEST_TIMEOUT', message: String }, request_id: String })
  }
})

t.test("Node's own 400 is in the contract's error shape", async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false' })
  const base = await listen(app)
  const { socket, received, closed } = await rawSocket(base)
  socket.write('NOT A REQUEST\r\n\r\n')
  await closed
  const answer = received()
  t.match(answer, /^HTTP\/1\.1 400/)
  t.match(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)), { error: { code: 'BAD_REQUEST', message: String }, request_id: String })
})

t.test('a client hanging up mid-upload is logged at info as a client event, not a database outage', async (t) => {
  const { lines, logger } = capture()
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false', LOG_LEVEL: 'info' }, { logger })
  const base = await listen(app)
  const { socket } = await rawSocket(base)
  const arrived = once(app.server, 'request')
  socket.write(`${HEAD(10_000)}{"source":"web","messages":[`)
  // the request is being read (its body parser waits for the rest) when the client leaves
  await arrived
  socket.destroy()
  await waitFor(() => lines.some((l) => l.code === 'CLIENT_ABORTED'), { what: 'the client event in the log', timeoutMs: 5000 }).catch((err) => {
    console.error(JSON.stringify(lines))
    throw err
  })
  t.same(
    lines.filter((l) => l.level >= 50),
    [],
    'nothing at error level'
  )
  t.notOk(
    lines.some((l) => /database (is )?unavailable|outage/i.test(JSON.stringify(l))),
    'not called a database outage'
  )
})
