/** What every endpoint of the simulator shares: faults, the state log and the server's timers. */
import type { Faults } from './faults';
import type { StateLog } from './state';

export interface Runtime {
  readonly faults: Faults;
  readonly state: StateLog;
  /** How long a simulated timeout hangs. */
  readonly timeoutMs: number;
  /** Waits (a timer the server clears when it stops). */
  sleep(ms: number): Promise<void>;
  /** Runs `fn` after `ms` (cleared when the server stops). */
  later(ms: number, fn: () => void): void;
  stopped(): boolean;
}
