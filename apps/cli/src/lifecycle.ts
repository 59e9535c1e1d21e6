// How a herald process runs its parts: a role is a list of components (the store, the bus, the
// KPI store, the gateway, the engine, ...) started in order and stopped in reverse order, so
// each stops while what it uses is still there. A start that fails stops what already started,
// in reverse, before the error goes on (nothing is left half open behind a refusal); a stop
// stops every started component, even after one failed, and says which failed.
import type { Logger } from 'pino';

/** One part of a running process. */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** A component whose start makes something later components use (a store, a bus, a gateway). */
export interface Part<T> extends Component {
  /** What its start made; reading it before the start is a programming error. */
  readonly value: T;
  /** Whether it started (a conditional part that never did holds no value). */
  readonly started: boolean;
}

/** A component that makes `start()`'s value available to later ones, and gives it to `stop()`. */
export function part<T>(name: string, start: () => Promise<T> | T, stop: (value: T) => Promise<void> | void = () => undefined): Part<T> {
  let made: { value: T } | undefined;
  return {
    name,
    get value(): T {
      if (!made) throw new Error(`${name} is used before it started`);
      return made.value;
    },
    get started() {
      return made !== undefined;
    },
    async start() {
      made = { value: await start() };
    },
    async stop() {
      if (made) await stop(made.value);
    },
  };
}

export interface StopFailure {
  component: string;
  error: unknown;
}

export class Lifecycle {
  readonly #components: readonly Component[];
  readonly #started: Component[] = [];

  /** `onStopFailure`: told of each component that failed to stop (the others are stopped all the same). */
  constructor(
    components: readonly Component[],
    private readonly onStopFailure: (failure: StopFailure) => void = () => undefined,
  ) {
    this.#components = components;
  }

  /** The components, in start order. */
  get names(): string[] {
    return this.#components.map((component) => component.name);
  }

  /**
   * Starts the components one after the other, in order. If one fails, the ones started are
   * stopped in reverse order and its error is thrown.
   */
  async start(): Promise<void> {
    for (const component of this.#components) {
      try {
        await component.start();
      } catch (error) {
        await this.stop();
        throw error;
      }
      this.#started.push(component);
    }
  }

  /** Stops the started components in reverse order, each even if an earlier one failed; returns the failures. */
  async stop(): Promise<StopFailure[]> {
    const failures: StopFailure[] = [];
    for (let component = this.#started.pop(); component; component = this.#started.pop()) {
      try {
        await component.stop();
      } catch (error) {
        const failure = { component: component.name, error };
        failures.push(failure);
        this.onStopFailure(failure);
      }
    }
    return failures;
  }
}

/**
 * Resolves on the first SIGINT or SIGTERM, for the caller to stop its components; a second
 * signal does not wait for that: the process exits at once (code 1).
 */
export function firstStopSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolveStop) => {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'shutting down: finishing the work in hand (a second signal exits at once)');
      // A second signal does not wait: what this process held goes back to the others once its heartbeat is stale.
      const now = (again: NodeJS.Signals) => {
        logger.warn({ signal: again }, 'second signal: exiting without finishing the work in hand');
        process.exit(1);
      };
      process.once('SIGINT', () => now('SIGINT'));
      process.once('SIGTERM', () => now('SIGTERM'));
      resolveStop(signal);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
