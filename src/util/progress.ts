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
