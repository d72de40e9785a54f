/**
 * Micro-batching: requests that arrive while a batch runs are run together as the next batch.
 * One stamp per call wastes most of an inference engine's time on per-call overhead; under
 * load this turns N concurrent calls into one, and adds no wait when the server is idle (a
 * lone request starts on the next turn of the event loop).
 */

interface Pending<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (err: unknown) => void;
}

export interface BatchInfo {
  /** Items run together with this one (itself included). */
  size: number;
  /** Time from push() to the start of its batch. */
  waitMs: number;
}

export class MicroBatcher<I, O> {
  private queue: (Pending<I, O> & { at: number })[] = [];
  private running = false;
  private closed = false;

  /**
   * `run` gets items and returns one output per item, in order. When a batch of several items
   * fails, each item is retried alone, so one bad item only fails its own request.
   */
  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    readonly maxBatch = 64,
  ) {
    if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new Error(`maxBatch must be a positive integer, got ${maxBatch}`);
  }

  get pending(): number {
    return this.queue.length;
  }

  push(item: I): Promise<{ out: O; batch: BatchInfo }> {
    if (this.closed) return Promise.reject(new Error('batcher closed'));
    return new Promise((resolve, reject) => {
      const at = performance.now();
      this.queue.push({
        item,
        at,
        resolve: (out) => resolve({ out, batch: this.lastInfo(at) }),
        reject,
      });
      this.kick();
    });
  }

  private current = { size: 0, start: 0 };

  private lastInfo(at: number): BatchInfo {
    return { size: this.current.size, waitMs: Math.max(0, this.current.start - at) };
  }

  private kick(): void {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    setImmediate(() => void this.flush());
  }

  private async flush(): Promise<void> {
    const batch = this.queue.splice(0, this.maxBatch);
    this.current = { size: batch.length, start: performance.now() };
    try {
      await this.runBatch(batch);
    } finally {
      this.running = false;
      this.kick();
    }
  }

  private async runBatch(batch: Pending<I, O>[]): Promise<void> {
    let outs: O[];
    try {
      outs = await this.run(batch.map((b) => b.item));
      if (outs.length !== batch.length) throw new Error(`batch function returned ${outs.length} outputs for ${batch.length} items`);
    } catch (err) {
      if (batch.length === 1) {
        batch[0].reject(err);
        return;
      }
      for (const b of batch) {
        try {
          const [o] = await this.run([b.item]);
          b.resolve(o);
        } catch (e) {
          b.reject(e);
        }
      }
      return;
    }
    batch.forEach((b, i) => b.resolve(outs[i]));
  }

  /** Rejects later pushes; queued items still run. */
  close(): void {
    this.closed = true;
  }
}
