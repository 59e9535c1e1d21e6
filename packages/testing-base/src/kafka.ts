// A Kafka broker for integration tests: the one KAFKA_BROKERS names, else a throwaway broker
// started with infra/kafka/start.sh (needs Java 17+, and Maven unless its jars are cached).
// Where neither is possible the Kafka suites are reported as skipped, loudly; with
// HERALD_REQUIRE_KAFKA=1 (set by .ci/run) that fails the run instead.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, tempDir } from './ports.js';
import { eventually } from './wait.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const START = join(REPO_ROOT, 'infra/kafka/start.sh');
const STOP = join(REPO_ROOT, 'infra/kafka/stop.sh');

export interface TestKafka {
  brokers: string[];
  /** Stops the broker if this process started it (a KAFKA_BROKERS broker is left alone). */
  stop(): Promise<void>;
}

function javaMajor(): number | undefined {
  const result = spawnSync('java', ['-XshowSettings:properties', '-version'], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return undefined;
  const match = /java\.specification\.version = (?:1\.)?(\d+)/.exec(result.stderr);
  return match ? Number(match[1]) : undefined;
}

function hasMaven(): boolean {
  const result = spawnSync('mvn', ['--version'], { encoding: 'utf8' });
  return !result.error && result.status === 0;
}

function jarsCached(): boolean {
  const cache = process.env.HERALD_KAFKA_CACHE ?? join(homedir(), '.cache/herald-kafka');
  return existsSync(join(cache, process.env.HERALD_KAFKA_VERSION ?? '4.4.0', '.complete'));
}

/** Why Kafka cannot run here, or undefined when it can (KAFKA_BROKERS set, or Java 17+ and Maven or cached jars). */
export function kafkaUnavailableReason(): string | undefined {
  if (process.env.KAFKA_BROKERS?.trim()) return undefined;
  const java = javaMajor();
  if (java === undefined) return 'no java on PATH (Kafka needs Java 17+)';
  if (java < 17) return `Java ${java} found, Kafka needs Java 17+`;
  if (!hasMaven() && !jarsCached()) return 'no mvn on PATH to fetch Kafka from Maven Central, and no cached jars';
  return undefined;
}

/**
 * Whether the Kafka suites run here. When they cannot, says so on stderr and returns false, or
 * throws when HERALD_REQUIRE_KAFKA=1.
 */
export function kafkaAvailable(): boolean {
  const reason = kafkaUnavailableReason();
  if (reason === undefined) return true;
  if (process.env.HERALD_REQUIRE_KAFKA === '1') {
    throw new Error(`Kafka suite required (HERALD_REQUIRE_KAFKA=1) but cannot run: ${reason}. Set KAFKA_BROKERS or install Java 17+ and Maven.`);
  }
  process.stderr.write(
    `\n*** Kafka suite SKIPPED: ${reason}. Set KAFKA_BROKERS (e.g. $(infra/kafka/start.sh)) or install Java 17+ and Maven to run it. ***\n\n`,
  );
  return false;
}

function run(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [script, ...args], { env, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${script} failed: ${error.message}\n${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

/** The broker of KAFKA_BROKERS, or a new one on free loopback ports with its own data dir. */
export async function startTestKafka(): Promise<TestKafka> {
  const named = process.env.KAFKA_BROKERS?.trim();
  if (named) return { brokers: named.split(',').map((b) => b.trim()), stop: async () => undefined };
  return startPrivateKafka();
}

export interface PrivateKafka extends TestKafka {
  /** kill -9 of the broker process (its data stays). */
  kill(): void;
  /** Starts it again on the same ports and data, and waits until it is ready. */
  restart(): Promise<void>;
}

/** A broker of this test's own (never the shared KAFKA_BROKERS one), for tests that kill it. */
export async function startPrivateKafka(): Promise<PrivateKafka> {
  const port = await freePort();
  let controllerPort = await freePort();
  while (controllerPort === port) controllerPort = await freePort();
  const env = {
    ...process.env,
    HERALD_KAFKA_PORT: String(port),
    HERALD_KAFKA_CONTROLLER_PORT: String(controllerPort),
    HERALD_KAFKA_DIR: tempDir('test-kafka'),
  };
  const bootstrap = await run(START, [], env);
  const pid = () => Number(readFileSync(join(env.HERALD_KAFKA_DIR, 'kafka.pid'), 'utf8').trim());
  let killed: number | undefined;
  return {
    brokers: [bootstrap],
    stop: async () => void (await run(STOP, ['--clean'], env)),
    kill: () => {
      killed = pid();
      process.kill(killed, 'SIGKILL');
    },
    restart: async () => {
      // start.sh takes a broker whose process is still there for a running one: wait until the
      // killed one is gone (a restart right after the kill would otherwise start nothing).
      const pid = killed;
      if (pid !== undefined) await eventually(() => !isAlive(pid), { timeoutMs: 30_000, intervalMs: 50, what: `the killed broker (pid ${pid}) to be gone` });
      killed = undefined;
      await run(START, [], env);
    },
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
