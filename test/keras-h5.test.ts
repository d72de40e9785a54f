import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initTf, tf } from '../src/runtime/tfjs.js';
import {
  findHdf5Signature,
  kerasConfigForTfjs,
  loadKerasH5,
  matchWeights,
  readKerasH5,
  summarizeHdf5Error,
} from '../src/models/keras-h5.js';
import { loadModel, type LoadOptions } from '../src/models/load.js';

/** The .h5 on tfjs (the rebuilt LayersModel itself, what these tests check). */
const loadKerasH5Predictor = (file: string, opts: LoadOptions = {}) => loadModel(file, { engine: 'tfjs', ...opts });
import { UserError } from '../src/util/errors.js';
import { FIXTURE_DIR, readReference } from './fixtures/keras/make-fixtures.js';
import { writeKerasH5, type KerasH5Spec } from './fixtures/keras/keras-h5-writer.js';

before(async () => {
  await initTf('cpu');
});

const fixture = (name: string) => path.join(FIXTURE_DIR, name);
const tmp = () => mkdtempSync(path.join(tmpdir(), 'occmap-keras-'));

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Load `file` and check its predictions on the reference input against numpy's. */
async function assertMatchesReference(file: string, model: 'seq_cnn' | 'functional_bn', opts: LoadOptions = {}): Promise<void> {
  const { ref } = readReference(model);
  const p = await loadKerasH5Predictor(file, { backend: 'cpu', ...opts });
  try {
    assert.deepEqual(p.inputShape, ref.xShape.slice(1));
    assert.equal(p.numClasses, ref.expectedShape[1]);
    const y = await p.predict(ref.x, ref.xShape[0]);
    const d = maxAbsDiff(y, ref.expected);
    assert.ok(d < 1e-5, `max abs diff vs numpy ${d}`);
  } finally {
    p.dispose();
  }
}

/** A variant of a fixture: its spec passed through `edit`, written to a temp .h5. */
async function variant(model: 'seq_cnn' | 'functional_bn', edit: (s: KerasH5Spec, cfg: any) => void): Promise<string> {
  const { spec } = readReference(model);
  const cfg = JSON.parse(spec.modelConfig!);
  edit(spec, cfg);
  if (spec.modelConfig !== undefined) spec.modelConfig = JSON.stringify(cfg);
  const file = path.join(tmp(), `${model}.h5`);
  await writeKerasH5(file, spec);
  return file;
}

/** `fn` rejects with a one-line UserError that starts with the file name and matches `re`. */
async function assertFileError(fn: () => Promise<unknown>, file: string, re: RegExp): Promise<void> {
  await assert.rejects(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `not a UserError: ${(err as Error)?.stack ?? err}`);
    assert.ok(err.message.startsWith(`${file}: `), err.message);
    assert.ok(!err.message.includes('\n'), `multi-line: ${err.message}`);
    assert.match(err.message, re);
    return true;
  });
}

// --- fixtures vs the numpy forward pass --------------------------------------------------------

test('Sequential CNN fixture (Conv2D, MaxPooling2D, Flatten, Dense softmax): predictions equal numpy', async () => {
  await assertMatchesReference(fixture('seq_cnn.h5'), 'seq_cnn');
});

test('Functional fixture with BatchNormalization, Activation, Dropout: predictions equal numpy', async () => {
  await assertMatchesReference(fixture('functional_bn.h5'), 'functional_bn');
});

test('readKerasH5: layer names, weight names and values as stored', async () => {
  const c = await readKerasH5(fixture('functional_bn.h5'));
  assert.equal(c.modelConfig.class_name, 'Functional');
  assert.equal(c.kerasVersion, '2.11.0');
  assert.equal(c.backend, 'tensorflow');
  assert.deepEqual(c.layerNames, ['input_1', 'conv', 'bn', 'relu', 'pool', 'flatten', 'dropout', 'logits']);
  assert.deepEqual(c.weights.get('input_1'), []);
  const bn = c.weights.get('bn')!;
  assert.deepEqual(bn.map((w) => w.name), ['bn/gamma:0', 'bn/beta:0', 'bn/moving_mean:0', 'bn/moving_variance:0']);
  const { spec } = readReference('functional_bn');
  const want = spec.layers.find((l) => l.name === 'bn')!.weights[3];
  assert.deepEqual(bn[3].shape, [3]);
  assert.deepEqual(bn[3].data, want.data);
});

test('loadKerasH5: the LayersModel carries the file weights (BN moving variance, dense kernel)', async () => {
  const model = await loadKerasH5(fixture('functional_bn.h5'));
  try {
    const { spec } = readReference('functional_bn');
    const bn = model.getLayer('bn').getWeights();
    const file = spec.layers.find((l) => l.name === 'bn')!.weights;
    assert.deepEqual(bn[3].dataSync(), file[3].data); // moving_variance
    assert.deepEqual(bn[0].dataSync(), file[0].data); // gamma
    const k = model.getLayer('logits').getWeights()[0];
    assert.deepEqual(k.shape, [48, 2]);
  } finally {
    model.dispose();
  }
});

test('predictor hash is the sha256 of the .h5 file', async () => {
  const p = await loadKerasH5Predictor(fixture('seq_cnn.h5'), { backend: 'cpu' });
  p.dispose();
  assert.equal(p.hash, createHash('sha256').update(readFileSync(fixture('seq_cnn.h5'))).digest('hex'));
});

// --- weights matched by name, layouts Keras also writes ----------------------------------------

test('weights are matched by name, not file order (shuffled weight_names give the same predictions)', async () => {
  const file = await variant('functional_bn', (s) => {
    const bn = s.layers.find((l) => l.name === 'bn')!;
    const [g, b, m, v] = bn.weights;
    bn.weights = [v, g, m, b];
    const d = s.layers.find((l) => l.name === 'logits')!;
    d.weights.reverse();
  });
  await assertMatchesReference(file, 'functional_bn');
});

test('layer_names split into layer_names0, layer_names1 (Keras past the 64 KB attribute limit)', async () => {
  const file = await variant('seq_cnn', (s) => {
    s.layerNamesChunks = 2;
  });
  await assertMatchesReference(file, 'seq_cnn');
});

test('later spellings load too: module/registered_name/build_config keys, batch_shape, dtype policy', async () => {
  const policy = { module: 'keras', class_name: 'DTypePolicy', config: { name: 'float32' }, registered_name: null };
  const file = await variant('functional_bn', (_s, cfg) => {
    for (const l of cfg.config.layers) {
      l.module = 'keras.layers';
      l.registered_name = null;
      if (l.class_name !== 'InputLayer') l.build_config = { input_shape: [null, 9, 9, 1] };
      l.config.dtype = policy;
    }
    const inp = cfg.config.layers[0].config;
    inp.batch_shape = inp.batch_input_shape;
    delete inp.batch_input_shape;
    cfg.config.layers[2].config.axis = -1;
  });
  await assertMatchesReference(file, 'functional_bn');
});

test('older Sequential spelling (Keras <= 2.2): config is a bare list of layers', async () => {
  const file = await variant('seq_cnn', (_s, cfg) => {
    cfg.config = cfg.config.layers.slice(1); // no InputLayer entry: Conv2D carries batch_input_shape
  });
  await assertMatchesReference(file, 'seq_cnn');
});

test('logits output (Dense linear) is turned into probabilities; declaring them probabilities is refused', async () => {
  const file = await variant('seq_cnn', (_s, cfg) => {
    cfg.config.layers[4].config.activation = 'linear';
  });
  await assertMatchesReference(file, 'seq_cnn');
  // Raw logits are not probabilities: the predictor refuses them rather than map them.
  await assert.rejects(loadKerasH5Predictor(file, { backend: 'cpu', outputs: 'probs' }), /not a finite probability/);
});

test('one-unit output: sigmoid and logits (linear) models both give [1-p, p]', async () => {
  const oneUnit = (activation: string) =>
    variant('seq_cnn', (s, cfg) => {
      cfg.config.layers[4].config.units = 1;
      cfg.config.layers[4].config.activation = activation;
      const d = s.layers.find((l) => l.name === 'dense')!;
      const k = d.weights[0];
      k.data = k.data.filter((_, i) => i % 3 === 0); // column 0 of (36, 3)
      k.shape = [36, 1];
      d.weights[1] = { ...d.weights[1], data: d.weights[1].data.slice(0, 1), shape: [1] };
    });
  const { ref } = readReference('seq_cnn');
  const n = ref.xShape[0];
  const ps = [];
  for (const act of ['sigmoid', 'linear']) {
    const p = await loadKerasH5Predictor(await oneUnit(act), { backend: 'cpu' });
    assert.equal(p.numClasses, 2);
    ps.push(await p.predict(ref.x, n));
    p.dispose();
  }
  assert.ok(maxAbsDiff(ps[0], ps[1]) < 1e-6);
  for (let i = 0; i < n; i++) assert.ok(Math.abs(ps[0][2 * i] + ps[0][2 * i + 1] - 1) < 1e-6);
  assert.ok(new Set(Array.from(ps[0]).map((v) => v.toFixed(3))).size > 2, 'outputs vary with the input');
});

// --- errors: one line, naming the file ---------------------------------------------------------

test('error: not an HDF5 file, empty file, zip archive (Keras 3 .keras)', async () => {
  const dir = tmp();
  const text = path.join(dir, 'notes.h5');
  writeFileSync(text, 'this is not hdf5\n'.repeat(100));
  await assertFileError(() => loadKerasH5(text), text, /not an HDF5 file/);
  const empty = path.join(dir, 'empty.h5');
  writeFileSync(empty, '');
  await assertFileError(() => loadKerasH5(empty), empty, /is empty/);
  const zip = path.join(dir, 'model.h5');
  writeFileSync(zip, Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(100)]));
  await assertFileError(() => loadKerasH5(zip), zip, /zip archive.*Keras 3/);
  const missing = path.join(dir, 'missing.h5');
  await assertFileError(() => loadKerasH5(missing), missing, /does not exist/);
});

test('error: truncated file', async () => {
  const bytes = readFileSync(fixture('seq_cnn.h5'));
  for (const frac of [0.5, 0.95]) {
    const file = path.join(tmp(), 'cut.h5');
    writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length * frac)));
    await assertFileError(() => loadKerasH5(file), file, /truncated/);
  }
});

test("error: weights-only file (model.save_weights) asks for model.save('x.h5')", async () => {
  const file = await variant('seq_cnn', (s) => {
    delete s.modelConfig;
  });
  await assertFileError(
    () => loadKerasH5(file),
    file,
    /^.*: no model_config attribute \(weights-only file\?\); save the whole model with model\.save\('x\.h5'\)$/,
  );
});

test('error: unsupported layer classes (Lambda, an unknown custom class), grouped convolution', async () => {
  const lambda = await variant('seq_cnn', (_s, cfg) => {
    cfg.config.layers.splice(3, 0, { class_name: 'Lambda', config: { name: 'lambda', function: ['4wEAAAAA', null, null], module: '__main__' } });
  });
  await assertFileError(() => loadKerasH5(lambda), lambda, /layer 'lambda' \(Lambda\).*Python code/);
  const custom = await variant('seq_cnn', (_s, cfg) => {
    cfg.config.layers[2].class_name = 'MyPooling';
  });
  await assertFileError(() => loadKerasH5(custom), custom, /unsupported layer class MyPooling \(layer 'max_pooling2d'\)/);
  const grouped = await variant('seq_cnn', (_s, cfg) => {
    cfg.config.layers[1].config.groups = 2;
  });
  await assertFileError(() => loadKerasH5(grouped), grouped, /groups=2/);
});

test('error: weight shape does not fit the config; a weighted layer missing from model_weights', async () => {
  const shape = await variant('seq_cnn', (_s, cfg) => {
    cfg.config.layers[1].config.filters = 5;
  });
  await assertFileError(() => loadKerasH5(shape), shape, /layer 'conv2d'.*shape \[3, 3, 1, 4\].*needs \[3, 3, 1, 5\]/);
  const missing = await variant('seq_cnn', (s) => {
    s.layers = s.layers.filter((l) => l.name !== 'dense');
  });
  await assertFileError(() => loadKerasH5(missing), missing, /no weights for layer 'dense'/);
  const bad = await variant('seq_cnn', (_s, cfg) => {
    cfg.config.layers[4].config.activation = 'no_such_activation';
  });
  await assertFileError(() => loadKerasH5(bad), bad, /cannot rebuild the model in tfjs/);
});

test('no tensors leak across a load + predict + dispose', async () => {
  const before = tf.memory().numTensors;
  const p = await loadKerasH5Predictor(fixture('functional_bn.h5'), { backend: 'cpu' });
  await p.predict(new Float32Array(2 * 81), 2);
  p.dispose();
  assert.equal(tf.memory().numTensors, before);
});

// --- pure helpers on hand-made cases -----------------------------------------------------------

test('matchWeights: by trailing name and shape, longest suffix wins, ties by position, errors named', () => {
  const W = (name: string, shape: number[]) => ({ name, shape });
  assert.deepEqual(matchWeights([W('d/kernel', [2, 3]), W('d/bias', [3])], [W('d/bias:0', [3]), W('d/kernel:0', [2, 3])]), [1, 0]);
  // BN: tfjs order gamma, beta, mean, var; file in another order, all shape [4]
  const bnFile = [W('bn/moving_variance:0', [4]), W('bn/beta:0', [4]), W('bn/gamma:0', [4]), W('bn/moving_mean:0', [4])];
  assert.deepEqual(matchWeights([W('bn/gamma', [4]), W('bn/beta', [4]), W('bn/moving_mean', [4]), W('bn/moving_variance', [4])], bnFile), [2, 1, 3, 0]);
  // nested model: two kernels, told apart by the layer component
  const nested = [W('seq/b/kernel:0', [3]), W('seq/a/kernel:0', [3])];
  assert.deepEqual(matchWeights([W('a/kernel', [3]), W('b/kernel', [3])], nested), [1, 0]);
  // same names and shapes: file position decides (as Keras loads)
  assert.deepEqual(matchWeights([W('kernel', [3]), W('kernel', [3])], [W('x/kernel:0', [3]), W('y/kernel:0', [3])]), [0, 1]);
  assert.throws(() => matchWeights([W('d/kernel', [2, 3])], [W('d/kernel:0', [3, 2])]), /shape \[3, 2\].*needs \[2, 3\]/);
  assert.throws(() => matchWeights([W('d/kernel', [2])], [W('d/W:0', [2])]), /no weight in the file is named like 'd\/kernel'/);
  assert.throws(() => matchWeights([W('d/kernel', [2])], []), /file has 0 weight/);
});

test('findHdf5Signature: at 0, after a 512-byte user block, absent', () => {
  const sig = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
  const buf = (at: number, size: number) => {
    const b = new Uint8Array(size);
    if (at >= 0) b.set(sig, at);
    return (off: number) => b.subarray(off, off + 8);
  };
  assert.equal(findHdf5Signature(2048, buf(0, 2048)), 0);
  assert.equal(findHdf5Signature(2048, buf(512, 2048)), 512);
  assert.equal(findHdf5Signature(2048, buf(100, 2048)), -1);
  assert.equal(findHdf5Signature(4, buf(-1, 4)), -1);
});

test('summarizeHdf5Error: innermost cause; truncation as byte counts', () => {
  const stack = [
    'HDF5-DIAG: Error detected in HDF5 (2.0.0):',
    '  #000: H5F.c line 821 in H5Fopen(): unable to synchronously open file',
    '    major: File accessibility',
    '  #001: H5Fint.c line 2117 in H5F_open(): unable to read superblock',
    '  #002: H5Fsuper.c line 600 in H5F__super_read(): truncated file: eof = 2433, sblock->base_addr = 0, stored_eof = 8112',
  ].join('\n');
  assert.equal(summarizeHdf5Error(stack), 'truncated: 2433 of 8112 bytes');
  assert.equal(summarizeHdf5Error(stack.split('\n').slice(0, 4).join('\n')), 'unable to read superblock');
});

test('kerasConfigForTfjs: BN axis list -> int, batch_shape, unwrapped input_layers; input not modified', () => {
  const known = new Set(['InputLayer', 'BatchNormalization']);
  const cfg = {
    class_name: 'Functional',
    config: {
      name: 'm',
      layers: [
        { class_name: 'InputLayer', config: { batch_shape: [null, 4, 4, 2], name: 'in' }, name: 'in', inbound_nodes: [] },
        { class_name: 'BatchNormalization', config: { name: 'bn', axis: [3] }, name: 'bn', inbound_nodes: [[['in', 0, 0, {}]]] },
      ],
      input_layers: ['in', 0, 0],
      output_layers: [['bn', 0, 0]],
    },
  };
  const out = kerasConfigForTfjs(cfg, 'm.h5', known) as any;
  assert.equal(out.config.layers[1].config.axis, 3);
  assert.deepEqual(out.config.layers[0].config.batch_input_shape, [null, 4, 4, 2]);
  assert.equal(out.config.layers[0].config.batch_shape, undefined);
  assert.deepEqual(out.config.input_layers, [['in', 0, 0]]);
  assert.deepEqual(cfg.config.layers[1].config.axis, [3]);
  assert.throws(() => kerasConfigForTfjs({ ...cfg, class_name: 'Dense' }, 'm.h5', known), /^.*m\.h5: model_config describes a Dense/);
  const multi = JSON.parse(JSON.stringify(cfg));
  multi.config.layers[1].config.axis = [1, 2];
  assert.throws(() => kerasConfigForTfjs(multi, 'm.h5', known), /several axes/);
});
