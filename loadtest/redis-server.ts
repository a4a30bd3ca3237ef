// A real redis-server of the test's own on a free loopback port, to stop (down) and
// SIGSTOP (hung) at will; killed after the test.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'

type T = { teardown(fn: () => unknown): void }

async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

export interface TestRedis {
  url: string
  /** SIGSTOP: the socket stays open, nothing answers */
  hang(): void
  resume(): void
  /** stops the server; start() brings one back on the same port */
  stop(): Promise<void>
  start(): Promise<void>
}

export async function startRedis(t: T): Promise<TestRedis> {
  const port = await freePort()
  let child: ChildProcess | undefined
  const start = async () => {
    const proc = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'inherit']
    })
    child = proc
    let seen = ''
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on('data', (chunk: Buffer) => {
        seen += chunk.toString()
        if (seen.includes('Ready to accept connections')) resolve()
      })
      proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${seen.slice(-500)}`)))
    })
    proc.stdout!.resume()
  }
  const stop = async () => {
    const proc = child
    child = undefined
    if (!proc || proc.exitCode !== null) return
    proc.kill('SIGCONT')
    proc.kill('SIGKILL')
    await once(proc, 'exit')
  }
  await start()
  t.teardown(stop)
  return {
    url: `redis://127.0.0.1:${port}`,
    hang: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    stop,
    start
  }
}
