// `herald start --engines N`: the send engine as N `herald engine` child processes beside the
// gateway, started and stopped with it.
import { spawn } from 'node:child_process';
import type { HeraldConfig } from '@herald/config';
import type { Logger } from 'pino';

export interface EngineProcess {
  pid: number;
  url: string;
  stop(): Promise<void>;
}

/**
 * N `herald engine` processes, each on its own port (PORT + 1 + i, or a free one when PORT is 0)
 * and the same store, bus and SMTP server (the public URL of their links and the secrets come
 * from the store, as for any engine). They are told to stop with the parent (SIGTERM: each
 * finishes the batches in hand) and their logs join the parent's. If one does not come up, those
 * already up are stopped.
 */
export async function startEngineProcesses(count: number, config: HeraldConfig, shared: { SMTP_URL: string }, logger: Logger): Promise<EngineProcess[]> {
  const started: EngineProcess[] = [];
  try {
    for (let i = 0; i < count; i++) started.push(await startEngineProcess(i, config, shared, logger));
  } catch (error) {
    await Promise.all(started.map((child) => child.stop()));
    throw error;
  }
  return started;
}

async function startEngineProcess(i: number, config: HeraldConfig, shared: { SMTP_URL: string }, logger: Logger): Promise<EngineProcess> {
  const bin = process.argv[1]!;
  const port = config.PORT === 0 ? 0 : config.PORT + 1 + i;
  const child = spawn(process.execPath, [bin, 'engine'], {
    env: { ...process.env, PORT: String(port), ...shared },
    stdio: ['ignore', 'pipe', 'inherit'],
    // Its own process group: Ctrl-C reaches only this parent, which stops the engines with one
    // SIGTERM each (a terminal's SIGINT and then ours would be a second signal: exit at once).
    detached: true,
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stopping = false;
  let stdout = '';
  const up = await new Promise<string>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const url = /Health, metrics:\s+(\S+)\/health\/ready/.exec(stdout)?.[1];
      if (url) resolve(url);
    });
    void exited.then((code) => reject(new Error(`engine process ${i + 1} exited (${code}) before it was up:\n${stdout}`)));
  });
  void exited.then((code) => {
    if (!stopping) logger.error({ engine: i + 1, pid: child.pid, code }, 'an engine process exited; its work goes to the others once its heartbeat is stale');
  });
  return {
    pid: child.pid!,
    url: up,
    async stop() {
      stopping = true;
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
