/**
 * Load on `occmap serve`: N concurrent clients POST /explain (one .npy stamp each, keep-alive)
 * on loopback for D seconds; requests/s, latency percentiles and errors, plus the server's own
 * figures (batch sizes, engine time). The server runs in a child process (`occmap serve`), so
 * the clients' work does not share its event loop; --url targets a server already running.
 * Optional exact-map clients (?exact=1) run alongside to show that exact maps do not hold up
 * estimates.
 *
 *   npm run bench:serve -- --classifier clf --explainer expl [--data maps.npz] [--clients 50]
 *        [--duration 30] [--warmup 2] [--exact-clients 0] [--threads N (server's estimate sessions)]
 *        [--url http://127.0.0.1:8080] [--json FILE]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { readDataset } from '../src/data/dataset.js';
import { serializeNpy } from '../src/data/npy.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { Rng } from '../src/util/rng.js';

export interface LoadOptions {
  classifier?: string;
  explainer?: string;
  data?: string;
  url?: string;
  clients?: number;
  durationS?: number;
  warmupS?: number;
  exactClients?: number;
  /** Extra `occmap serve` options, e.g. ['--threads', '2']. */
  serveArgs?: string[];
  log?: (line: string) => void;
}

export interface LatencySummary {
  requests: number;
  perSecond: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export interface LoadResult {
  url: string;
  clients: number;
  exactClients: number;
  durationS: number;
  cores: number;
  estimate: LatencySummary & { errors: number; errorKinds: Record<string, number>; meanBatch: number; meanEngineMs: number };
  /**
   * CPU milliseconds per successful request (all kinds) of the server process (when spawned
   * here, Linux) and of these clients: unlike wall-clock figures they hold on a shared machine.
   */
  cpuMsPerRequest: { server?: number; clients: number };
  /** cores / (server + client CPU per request): the rate an otherwise idle machine could reach. */
  idleCeilingPerSecond?: number;
  exact?: LatencySummary & { errors: number; errorKinds: Record<string, number>; meanExactMs: number };
}

/** Nearest-rank percentile of ascending `sorted` (q in [0,1]); NaN when empty. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function summarize(latencies: number[], seconds: number): LatencySummary {
  const s = [...latencies].sort((a, b) => a - b);
  const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN;
  return { requests: s.length, perSecond: s.length / seconds, p50: percentile(s, 0.5), p90: percentile(s, 0.9), p99: percentile(s, 0.99), max: s.length ? s[s.length - 1] : NaN, mean };
}

/** CPU seconds (user + system) a process has used so far, from /proc; undefined elsewhere. */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in USER_HZ (100 on Linux)
  } catch {
    return undefined;
  }
}

const BIN = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));

/** Spawn `occmap serve --port 0` and read its URL from the first line it prints. */
async function spawnServer(o: LoadOptions): Promise<{ url: string; child: ChildProcess }> {
  const args = [BIN, 'serve', '--classifier', o.classifier!, '--explainer', o.explainer!, '--port', '0'];
  if (o.data) args.push('--data', o.data);
  args.push(...(o.serveArgs ?? []));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /occmap serve: (http:\/\/\S+?)\/?\s/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`occmap serve exited (${code}): ${err.trim() || out.trim()}`)));
  });
  return { url, child };
}

function postOnce(agent: http.Agent, target: URL, path: string, body: Uint8Array): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { agent, host: target.hostname, port: target.port, path, method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Stamps to send: the dataset's first ones, else random ones of the shape the server takes. */
async function stamps(o: LoadOptions, url: string): Promise<Uint8Array<ArrayBuffer>[]> {
  if (o.data) {
    const ds = await readDataset(o.data);
    const [n, h, w, c] = ds.shape;
    const px = h * w * c;
    return Array.from({ length: Math.min(n, 64) }, (_, i) => new Uint8Array(serializeNpy(ds.images.subarray(i * px, (i + 1) * px), [h, w, c])));
  }
  const models = (await (await fetch(`${url}/models`)).json()) as { classifier: { inputShape: [number, number, number] } };
  const [h, w, c] = models.classifier.inputShape;
  const rng = new Rng(1);
  return Array.from({ length: 32 }, () => new Uint8Array(serializeNpy(Float32Array.from({ length: h * w * c }, () => rng.next()), [h, w, c])));
}

export async function runServeLoad(o: LoadOptions): Promise<LoadResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const clients = o.clients ?? 50;
  const exactClients = o.exactClients ?? 0;
  const durationS = o.durationS ?? 30;
  const warmupS = o.warmupS ?? 2;
  let child: ChildProcess | undefined;
  let url = o.url;
  if (!url) {
    if (!o.classifier || !o.explainer) throw new Error('give --classifier and --explainer (or --url of a running server)');
    const s = await spawnServer(o);
    child = s.child;
    url = s.url;
  }
  try {
    const bodies = await stamps(o, url);
    log(`serve-load: ${url}, ${clients} estimate clients${exactClients ? ` + ${exactClients} exact-map clients` : ''}, ${warmupS} s warm-up + ${durationS} s, ${bodies.length} distinct stamps`);
    type Rec = { lat: number[]; errors: number; kinds: Record<string, number>; batch: number; engineMs: number; exactMs: number };
    const rec = (): Rec => ({ lat: [], errors: 0, kinds: {}, batch: 0, engineMs: 0, exactMs: 0 });
    const est = rec();
    const ex = rec();
    let measuring = false;
    let stop = false;
    // node:http with keep-alive: fetch (undici) costs the clients as much CPU as the server
    // spends, which on a small machine would be measured as server slowness.
    const agent = new http.Agent({ keepAlive: true, maxSockets: clients + exactClients });
    const target = new URL(url);
    // Completed, counted requests per client (estimate clients first, then exact-map ones).
    const measured = new Array<number>(clients + exactClients).fill(0);
    const loop = async (k: number, exact: boolean): Promise<void> => {
      const r = exact ? ex : est;
      const slot = exact ? clients + k : k;
      let i = k;
      while (!stop) {
        const body = bodies[i++ % bodies.length];
        const t0 = performance.now();
        // A request started inside the window counts when it completes, also after the window
        // (the loops are awaited): dropping it would bias latencies toward short requests and,
        // on a loaded machine, could leave a slow exact-map client with nothing measured.
        const counted = measuring;
        let kind: string | undefined;
        let json: { timings?: Record<string, number>; estimate?: unknown; exact?: unknown } | undefined;
        try {
          const res = await postOnce(agent, target, `/explain${exact ? '?exact=1' : ''}`, body);
          json = JSON.parse(res.body) as typeof json;
          if (res.status !== 200) kind = `HTTP ${res.status}`;
          else if (!json?.estimate || (exact && !json.exact)) kind = 'incomplete body';
        } catch (err) {
          kind = (err as Error).message.split('\n')[0];
        }
        const dt = performance.now() - t0;
        if (!counted) continue;
        measured[slot]++;
        if (kind) {
          r.errors++;
          r.kinds[kind] = (r.kinds[kind] ?? 0) + 1;
        } else {
          r.lat.push(dt);
          r.batch += json!.timings!.batchSize ?? 1;
          r.engineMs += (json!.timings!.classifyMs ?? 0) + (json!.timings!.estimateMs ?? 0);
          r.exactMs += json!.timings!.exactMs ?? 0;
        }
      }
    };
    const loops = [...Array.from({ length: clients }, (_, k) => loop(k, false)), ...Array.from({ length: exactClients }, (_, k) => loop(k, true))];
    await new Promise((r) => setTimeout(r, warmupS * 1000));
    measuring = true;
    const t0 = performance.now();
    const srv0 = child?.pid ? procCpuSeconds(child.pid) : undefined;
    const cli0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, durationS * 1000));
    // A client with nothing measured yet (an exact map slower than the window on a loaded
    // machine) holds the window open until it has one, up to a minute: the figures then say
    // something about every client instead of depending on the machine's speed.
    const until = performance.now() + 60_000;
    while (measured.some((m) => m === 0) && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
    measuring = false;
    const seconds = (performance.now() - t0) / 1000;
    const srv1 = child?.pid ? procCpuSeconds(child.pid) : undefined;
    const cli = process.cpuUsage(cli0);
    stop = true;
    await Promise.all(loops);
    agent.destroy();
    const result: LoadResult = {
      url,
      clients,
      exactClients,
      durationS: seconds,
      cores: availableParallelism(),
      estimate: { ...summarize(est.lat, seconds), errors: est.errors, errorKinds: est.kinds, meanBatch: est.batch / Math.max(1, est.lat.length), meanEngineMs: est.engineMs / Math.max(1, est.lat.length) },
      cpuMsPerRequest: { clients: 0 },
    };
    const ok = Math.max(1, est.lat.length + ex.lat.length);
    const server = srv0 !== undefined && srv1 !== undefined ? ((srv1 - srv0) * 1000) / ok : undefined;
    const clientsCpu = (cli.user + cli.system) / 1000 / ok;
    result.cpuMsPerRequest = { server, clients: clientsCpu };
    if (server !== undefined && !exactClients) result.idleCeilingPerSecond = (1000 * result.cores) / (server + clientsCpu);
    if (exactClients) result.exact = { ...summarize(ex.lat, seconds), errors: ex.errors, errorKinds: ex.kinds, meanExactMs: ex.exactMs / Math.max(1, ex.lat.length) };
    return result;
  } finally {
    if (child) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
  }
}

export function formatLoad(r: LoadResult): string {
  const f = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '-');
  const e = r.estimate;
  const lines = [
    `POST /explain (estimate), ${r.clients} clients, ${r.durationS.toFixed(1)} s on ${r.cores} cores (shared machine: figures vary):`,
    `  ${e.requests} ok, ${f(e.perSecond)} req/s; latency ms p50 ${f(e.p50)}  p90 ${f(e.p90)}  p99 ${f(e.p99)}  max ${f(e.max)}; errors ${e.errors}${e.errors ? ' ' + JSON.stringify(e.errorKinds) : ''}`,
    `  server: mean batch ${e.meanBatch.toFixed(1)} stamps, classify+estimate ${e.meanEngineMs.toFixed(2)} ms per batch`,
    `  target p99 < 100 ms with 0 errors: ${e.errors === 0 && e.p99 < 100 ? 'met' : 'NOT met'}`,
  ];
  const c = r.cpuMsPerRequest;
  lines.push(
    `CPU per request: server ${c.server !== undefined ? c.server.toFixed(3) + ' ms' : 'n/a'}, clients ${c.clients.toFixed(3)} ms` +
      (r.idleCeilingPerSecond ? `; an idle ${r.cores}-core machine could serve about ${r.idleCeilingPerSecond.toFixed(0)} req/s` : ''),
  );
  if (r.exact) {
    const x = r.exact;
    lines.push(
      `POST /explain?exact=1, ${r.exactClients} clients alongside:`,
      `  ${x.requests} ok, ${f(x.perSecond)} req/s; latency ms p50 ${f(x.p50)}  p99 ${f(x.p99)}; exact map ${f(x.meanExactMs)} ms in the worker; errors ${x.errors}${x.errors ? ' ' + JSON.stringify(x.errorKinds) : ''}`,
    );
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      classifier: { type: 'string' },
      explainer: { type: 'string' },
      data: { type: 'string' },
      url: { type: 'string' },
      clients: { type: 'string', default: '50' },
      duration: { type: 'string', default: '30' },
      warmup: { type: 'string', default: '2' },
      'exact-clients': { type: 'string', default: '0' },
      threads: { type: 'string' },
      json: { type: 'string' },
    },
  });
  const num = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) {
      process.stderr.write(`serve-load: --${name} must be a number >= ${min}, got '${v}'\n`);
      process.exit(2);
    }
    return n;
  };
  runServeLoad({
    classifier: values.classifier,
    explainer: values.explainer,
    data: values.data,
    url: values.url,
    clients: num('clients', values.clients!, 1),
    durationS: num('duration', values.duration!, 0.1),
    warmupS: num('warmup', values.warmup!, 0),
    exactClients: num('exact-clients', values['exact-clients']!, 0),
    serveArgs: values.threads ? ['--threads', values.threads] : [],
  }).then(
    async (r) => {
      process.stdout.write(formatLoad(r) + '\n');
      if (values.json) await writeFileAtomic(values.json, JSON.stringify(r, null, 2) + '\n');
    },
    (err: Error) => {
      process.stderr.write(`serve-load: ${err.message}\n`);
      process.exit(1);
    },
  );
}
