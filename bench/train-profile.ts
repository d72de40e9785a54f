/**
 * Per-kernel time of one training step (forward + backward + gradient readout) at several
 * batch sizes on one thread, to see which kernels do not scale with the batch.
 *
 *   node dist/bench/train-profile.js [--model unet|autoencoder|classifier] [--batches 5,10,32,64] [--reps 5]
 */
import { pathToFileURL } from 'node:url';
import { buildClassifier } from '../src/models/classifier.js';
import { buildAutoencoder } from '../src/models/autoencoder.js';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import { lossTensor } from '../src/train/objective.js';
import { Rng } from '../src/util/rng.js';

type Which = 'unet' | 'autoencoder' | 'classifier';

function build(which: Which): tfl.LayersModel {
  if (which === 'classifier') return buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 1 });
  if (which === 'autoencoder') return buildAutoencoder({ seed: 1 });
  return buildAutoencoder({ unet: true, condition: 'onehot', numClasses: 2, seed: 1 });
}

function inputs(which: Which, n: number): { x: tf.Tensor[]; y: tf.Tensor } {
  const rng = new Rng(3);
  const side = which === 'classifier' ? 21 : 24;
  const img = tf.tensor4d(Float32Array.from({ length: n * side * side }, () => rng.next()), [n, side, side, 1]);
  if (which === 'classifier') return { x: [img], y: tf.tensor1d(Int32Array.from({ length: n }, () => rng.int(2)), 'int32') };
  const y = tf.tensor4d(Float32Array.from({ length: n * side * side }, () => rng.next()), [n, side, side, 1]);
  if (which === 'autoencoder') return { x: [img], y };
  const lab = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) lab[i * 2 + rng.int(2)] = 1;
  return { x: [img, tf.tensor2d(lab, [n, 2])], y };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (k: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : undefined);
  const which = (opt('--model') ?? 'unet') as Which;
  const batches = (opt('--batches') ?? '5,10,32,64').split(',').map(Number);
  const reps = Number(opt('--reps') ?? 5);
  await initTf('wasm');
  const net = build(which);
  const vars = net.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
  const loss = which === 'classifier' ? 'sparse_categorical_crossentropy' : 'mse';
  const table = new Map<string, number[]>();
  const totals: number[] = [];
  for (const [bi, n] of batches.entries()) {
    const { x, y } = inputs(which, n);
    const step = () => {
      const { value, grads } = tf.variableGrads(() => {
        const pred = net.apply(x.length === 1 ? x[0] : x, { training: true }) as tf.Tensor;
        return lossTensor(loss, y, pred, false) as tf.Scalar;
      }, vars);
      for (const v of vars) grads[v.name]?.dataSync();
      value.dispose();
      Object.values(grads).forEach((g) => g.dispose());
    };
    step();
    const best = new Map<string, number>();
    let bestTotal = Infinity;
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      const prof = await tf.profile(step);
      bestTotal = Math.min(bestTotal, performance.now() - t0);
      const sums = new Map<string, number>();
      for (const k of prof.kernels) {
        const key = `${k.name} ${JSON.stringify(k.inputShapes?.map((s) => s?.slice(1)))}`;
        sums.set(key, (sums.get(key) ?? 0) + (k.kernelTimeMs as number));
      }
      for (const [k, v] of sums) best.set(k, Math.min(best.get(k) ?? Infinity, v));
    }
    totals.push(bestTotal);
    for (const [k, v] of best) {
      if (!table.has(k)) table.set(k, batches.map(() => 0));
      table.get(k)![bi] = v;
    }
    x.forEach((t) => t.dispose());
    y.dispose();
  }
  const rows = [...table.entries()].sort((a, b) => b[1][b[1].length - 1] - a[1][a[1].length - 1]);
  const byName = new Map<string, number[]>();
  for (const [k, v] of rows) {
    const name = k.split(' ')[0];
    const acc = byName.get(name) ?? batches.map(() => 0);
    v.forEach((t, i) => (acc[i] += t));
    byName.set(name, acc);
  }
  const hdr = batches.map((b) => `b${b}`.padStart(9)).join('') + '   ms per sample at each batch';
  process.stdout.write(`${which}: step wall (min of ${reps}) ${totals.map((t, i) => `b${batches[i]} ${t.toFixed(1)} ms (${(t / batches[i]).toFixed(2)}/sample)`).join(', ')}\n`);
  process.stdout.write(`by kernel${' '.repeat(31)}${hdr}\n`);
  for (const [k, v] of [...byName.entries()].sort((a, b) => b[1][b[1].length - 1] - a[1][a[1].length - 1])) {
    process.stdout.write(`${k.padEnd(40)}${v.map((t) => t.toFixed(1).padStart(9)).join('')}   ${v.map((t, i) => (t / batches[i]).toFixed(2)).join(' ')}\n`);
  }
  process.stdout.write(`top kernels with shapes\n`);
  for (const [k, v] of rows.slice(0, Number(opt('--top') ?? 30))) {
    process.stdout.write(`${k.slice(0, 90).padEnd(90)}${v.map((t) => t.toFixed(2).padStart(8)).join('')}\n`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    process.stderr.write(`train-profile: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
