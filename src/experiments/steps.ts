/**
 * A study as a step graph (make / dvc style): each step has inputs, an output path and a run
 * function; a step whose output exists with matching inputs is skipped.
 *
 * A step's inputs are plain JSON (options, and the `hash` of the steps it depends on); their
 * hash is the step's own hash, recorded in a stamp file `<stamps>/<step name>.json` once the
 * step finishes. So a changed option or a recomputed upstream step reruns every step below it,
 * and nothing else. An output that exists without a stamp (a study directory from before the
 * stamps) is checked by the step's `adopt` (default: accepted) and then stamped.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ensureDir, writeFileAtomic } from '../util/atomic.js';

export interface Step<T> {
  /** Unique within the graph; also the stamp's file name (letters, digits, '-', '_', '.', ':'). */
  name: string;
  inputs: Record<string, unknown>;
  /** The file or directory the step makes. */
  output: string;
  /** Make the output (it may resume from partial work it finds there). */
  run: () => Promise<T>;
  /** The value of a finished step, read back from its output when the step is skipped. */
  load: () => Promise<T>;
  /** An output found without a stamp: may it stand for these inputs? (default yes) */
  adopt?: () => Promise<boolean>;
  /**
   * Before a rerun over an output made with other inputs: remove it (default), or keep it
   * when `run` replaces or resumes it itself.
   */
  keepStale?: boolean;
}

export interface StepOutcome<T> {
  value: T;
  /** This step's hash: what downstream steps put in their inputs. */
  hash: string;
  ran: boolean;
  seconds: number;
}

interface Stamp {
  step: string;
  hash: string;
  inputs: Record<string, unknown>;
  finishedAt: string;
  seconds: number;
}

export function stepHash(name: string, inputs: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify([name, inputs])).digest('hex').slice(0, 16);
}

export class StepGraph {
  /** Seconds per step run or loaded in this invocation, in order. */
  readonly seconds: Record<string, number> = {};
  readonly ran: string[] = [];
  private readonly hashes = new Map<string, string>();

  constructor(
    private readonly stampDir: string,
    private readonly log: (line: string) => void = () => {},
  ) {}

  private stampFile(name: string): string {
    return path.join(this.stampDir, `${name.replace(/[^A-Za-z0-9._:-]/g, '_')}.json`);
  }

  private readStamp(name: string): Stamp | undefined {
    const f = this.stampFile(name);
    if (!existsSync(f)) return undefined;
    try {
      return JSON.parse(readFileSync(f, 'utf8')) as Stamp;
    } catch {
      return undefined;
    }
  }

  /** Is the step's output there and made from these inputs? */
  private async upToDate<T>(step: Step<T>, hash: string): Promise<boolean> {
    if (!existsSync(step.output)) return false;
    const stamp = this.readStamp(step.name);
    if (stamp) return stamp.hash === hash;
    return step.adopt ? step.adopt() : true;
  }

  /** Run the step, or skip it when its output exists with matching inputs. */
  async run<T>(step: Step<T>): Promise<StepOutcome<T>> {
    const hash = stepHash(step.name, step.inputs);
    const t0 = performance.now();
    let value: T;
    let ran = false;
    if (await this.upToDate(step, hash)) {
      value = await step.load();
    } else {
      if (existsSync(step.output) && !step.keepStale) {
        this.log(`${step.name}: ${step.output} was made from other inputs: making it again`);
        rmSync(step.output, { recursive: true, force: true });
      }
      value = await step.run();
      ran = true;
      this.ran.push(step.name);
    }
    const seconds = (performance.now() - t0) / 1000;
    if (ran || !this.readStamp(step.name)) {
      ensureDir(this.stampDir);
      const stamp: Stamp = { step: step.name, hash, inputs: step.inputs, finishedAt: new Date().toISOString(), seconds };
      await writeFileAtomic(this.stampFile(step.name), JSON.stringify(stamp, null, 1) + '\n');
    }
    this.seconds[step.name] = seconds;
    this.hashes.set(step.name, hash);
    return { value, hash, ran, seconds };
  }

  /** The hash of a step already run (or skipped) in this graph. */
  hashOf(name: string): string | undefined {
    return this.hashes.get(name);
  }
}
