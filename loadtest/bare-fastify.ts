// Ceiling A of the bench: bare Fastify parsing the same JSON body, no validation, no database.
// Whatever Gleaner's ingest does beyond this is the cost of storing and checking for real.
import Fastify from 'fastify'

const app = Fastify({ logger: false, bodyLimit: 1_048_576 })
let n = 0
app.post('/api/v1/conversations', async (req, reply) => {
  const body = req.body as { source?: string }
  return reply.code(202).send({ id: String(++n), status: 'pending', source: body.source })
})
// the bench's readiness probe: which process answers
app.get('/', async () => ({ pid: process.pid }))
const url = await app.listen({ port: Number(process.env.PORT ?? 3999), host: '127.0.0.1' })
// as src/server.ts does: a parent with an IPC channel learns the address from this process itself
process.send?.({ type: 'listening', url, pid: process.pid })
