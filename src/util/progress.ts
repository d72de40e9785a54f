/**
 * Progress for long work: items done, items/s and ETA. A live bar (cli-progress) on a
 * terminal; plain lines every few seconds otherwise (logs, CI), so both stay readable.
 */
import cliProgress from 'cli-progress';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export interface ProgressOptions {
  label: string;
  unit: string;
  total: number;
  /** Items already done before this run (resume): excluded from the rate. */
  start?: number;
  quiet?: boolean;
  stream?: NodeJS.WriteStream;
}

export class Progress {
  private done: number;
  private readonly t0 = performance.now();
  private lastLine = 0;
  private bar?: cliProgress.SingleBar;
  private readonly stream: NodeJS.WriteStream;

  constructor(private readonly o: ProgressOptions) {
    this.done = o.start ?? 0;
    this.stream = o.stream ?? process.stderr;
    if (!o.quiet && this.stream.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          format: `${o.label} [{bar}] {value}/{total} ${o.unit} | {rate} ${o.unit}/s | ETA {eta_h}`,
          stream: this.stream,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(o.total, this.done, { rate: '0', eta_h: '?' });
    }
  }

  /** Items per second over this run. */
  rate(): number {
    const dt = (performance.now() - this.t0) / 1000;
    return dt > 0 ? (this.done - (this.o.start ?? 0)) / dt : 0;
  }

  eta(): number {
    const r = this.rate();
    return r > 0 ? (this.o.total - this.done) / r : Infinity;
  }

  tick(n = 1): void {
    this.done += n;
    if (this.o.quiet) return;
    const rate = this.rate();
    if (this.bar) {
      this.bar.update(this.done, { rate: rate.toFixed(1), eta_h: formatDuration(this.eta()) });
      return;
    }
    const now = performance.now();
    if (now - this.lastLine > 5000 || this.done >= this.o.total) {
      this.lastLine = now;
      this.stream.write(
        `${this.o.label}: ${this.done}/${this.o.total} ${this.o.unit}, ${rate.toFixed(1)} ${this.o.unit}/s, ETA ${formatDuration(this.eta())}\n`,
      );
    }
  }

  stop(): void {
    this.bar?.stop();
  }
}

/**
 * What long library work reports instead of printing: `done` of `total` `unit`s of the work
 * named `label`; `start` = how many were done before this run (a resume), excluded from rates.
 * `done === total` (or `final`) closes the work.
 */
export interface ProgressEvent {
  label: string;
  unit: string;
  done: number;
  total: number;
  start?: number;
  /** The work stopped here (done may be below total, e.g. everything was found earlier). */
  final?: boolean;
}
export type ProgressCallback = (e: ProgressEvent) => void;

/** The library side: counts and reports through `cb` (nothing when there is no callback). */
export class ProgressReporter {
  private done: number;
  constructor(
    private readonly cb: ProgressCallback | undefined,
    private readonly o: { label: string; unit: string; total: number; start?: number },
  ) {
    this.done = o.start ?? 0;
    this.emit(false);
  }

  tick(n = 1): void {
    this.done += n;
    this.emit(false);
  }

  stop(): void {
    this.emit(true);
  }

  private emit(final: boolean): void {
    this.cb?.({ label: this.o.label, unit: this.o.unit, done: this.done, total: this.o.total, start: this.o.start, ...(final ? { final } : {}) });
  }
}

/**
 * The client side: draws each reported piece of work as a Progress (a live bar on a terminal,
 * lines every few seconds otherwise). One bar per label at a time.
 */
export class ProgressPrinter {
  private readonly bars = new Map<string, { p: Progress; done: number }>();
  constructor(private readonly o: { quiet?: boolean; stream?: NodeJS.WriteStream } = {}) {}

  readonly callback: ProgressCallback = (e) => {
    let b = this.bars.get(e.label);
    if (!b) {
      b = { p: new Progress({ label: e.label, unit: e.unit, total: e.total, start: e.start, quiet: this.o.quiet, stream: this.o.stream }), done: e.start ?? 0 };
      this.bars.set(e.label, b);
    }
    if (e.done > b.done) b.p.tick(e.done - b.done);
    b.done = e.done;
    if (e.final) {
      b.p.stop();
      this.bars.delete(e.label);
    }
  };

  stop(): void {
    for (const b of this.bars.values()) b.p.stop();
    this.bars.clear();
  }
}
