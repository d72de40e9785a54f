/**
 * On-CPU and run-queue time of the calling thread (ms), for telling apart "this thread's work
 * got slower" from "this thread waited for a core" when replicas run side by side. Linux
 * exposes both per thread in /proc/thread-self/schedstat (ns); elsewhere null. Node 20 has no
 * per-thread CPU clock (process.threadCpuUsage arrived in Node 23).
 */
import { readFileSync } from 'node:fs';

export interface ThreadTime {
  cpuMs: number;
  queuedMs: number;
}

let available = process.platform === 'linux';

export function threadTime(): ThreadTime | null {
  if (!available) return null;
  try {
    const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ');
    return { cpuMs: Number(run) / 1e6, queuedMs: Number(wait) / 1e6 };
  } catch {
    available = false;
    return null;
  }
}

/** `b - a`, or zeros when either is unknown. */
export function threadTimeSince(a: ThreadTime | null, b: ThreadTime | null = threadTime()): ThreadTime {
  return a && b ? { cpuMs: b.cpuMs - a.cpuMs, queuedMs: b.queuedMs - a.queuedMs } : { cpuMs: 0, queuedMs: 0 };
}
