/**
 * Bring-your-own classifier from a Keras 2 HDF5 file (`model.save('m.h5')` in tf.keras 2.x):
 * the root attribute `model_config` (the model's JSON) is rebuilt as a tfjs LayersModel, and
 * the weights under `model_weights/<layer>/<weight name>` are set layer by layer, matched by
 * name (kernel, bias, gamma, moving_mean, ...) and checked by shape, never by position alone.
 *
 * HDF5 is read with h5wasm (the HDF5 C library compiled to wasm; its node build reads the host
 * file system directly). It is imported on demand, so runs without a .h5 model never load it.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Dataset, Group } from 'h5wasm/node';
import { tf, tfl } from '../runtime/tfjs.js';
import { fileError, UserError } from '../util/errors.js';

// ---------------------------------------------------------------------------------------------
// HDF5 reading

type H5 = typeof import('h5wasm/node');
let h5Loaded: Promise<H5> | undefined;

function h5(): Promise<H5> {
  h5Loaded ??= (async () => {
    const mod = await import('h5wasm/node');
    const m = await mod.ready;
    // HDF5 errors become JS exceptions instead of a diagnostic stack printed on stderr.
    m.activate_throwing_error_handler();
    return mod;
  })();
  return h5Loaded;
}

const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]; // \x89HDF\r\n\x1a\n

/**
 * Where the HDF5 superblock signature sits: at 0, or after a user block at 512, 1024, 2048...
 * Returns -1 when absent. `read(offset)` gives the 8 bytes at offset (fewer past the end).
 */
export function findHdf5Signature(size: number, read: (offset: number) => Uint8Array): number {
  for (let off = 0; off + 8 <= size; off = off === 0 ? 512 : off * 2) {
    const b = read(off);
    if (HDF5_SIGNATURE.every((v, i) => b[i] === v)) return off;
  }
  return -1;
}

/** One line out of an HDF5 error stack: its innermost message, which names the real cause. */
export function summarizeHdf5Error(message: string): string {
  const causes = message
    .split('\n')
    .filter((l) => /#\d+:/.test(l))
    .map((l) => l.replace(/^.*?\(\): /, '').trim());
  const last = causes[causes.length - 1] ?? message.split('\n')[0];
  const t = /truncated file: eof = (\d+).*stored_eof = (\d+)/.exec(last);
  if (t) return `truncated: ${t[1]} of ${t[2]} bytes`;
  return last;
}

function sniff(file: string): void {
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    throw fileError(file, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot read (${(err as Error).message})`);
  }
  if (st.isDirectory()) throw fileError(file, 'is a directory, expected a Keras .h5 file');
  let fd;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw fileError(file, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    const read = (off: number) => {
      const b = new Uint8Array(8);
      const n = readSync(fd, b, 0, 8, off);
      return b.subarray(0, n);
    };
    if (findHdf5Signature(st.size, read) >= 0) return;
    const head = read(0);
    if (head[0] === 0x50 && head[1] === 0x4b) {
      throw fileError(file, "is a zip archive, not HDF5 (a Keras 3 '.keras' file?); only Keras 2 HDF5 files are supported: save with tf.keras model.save('x.h5')");
    }
    throw fileError(file, st.size === 0 ? 'is empty, expected a Keras .h5 (HDF5) file' : 'is not an HDF5 file (no HDF5 signature); expected a Keras 2 model saved with model.save(\'x.h5\')');
  } finally {
    closeSync(fd);
  }
}

export interface KerasWeightData {
  /** The name Keras gave it, e.g. 'conv2d/kernel:0'. */
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface KerasH5Contents {
  /** Parsed `model_config`: {class_name, config}. */
  modelConfig: { class_name: string; config: Record<string, unknown> };
  kerasVersion?: string;
  backend?: string;
  /** `model_weights/layer_names`, in the file's order. */
  layerNames: string[];
  /** Weights per layer name, in the file's `weight_names` order. */
  weights: Map<string, KerasWeightData[]>;
}

function attrText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return new TextDecoder().decode(v).replace(/\0+$/, '');
  if (Array.isArray(v) && v.length === 1) return attrText(v[0]);
  return undefined;
}

/**
 * A list-of-names attribute (layer_names, weight_names): one attribute, or chunks `name0`,
 * `name1`, ... when Keras split it past the 64 KB attribute limit. An empty list is stored by
 * h5py as an empty float array. Undefined when absent.
 */
function namesAttr(g: Group, name: string, where: () => string): string[] | undefined {
  const attrs = g.attrs;
  const read = (key: string): string[] => {
    const v = attrs[key].value as unknown;
    if (typeof v === 'string') return [v];
    if (ArrayBuffer.isView(v) && (v as unknown as { length: number }).length === 0) return [];
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
    throw new UserError(`${where()}: attribute ${key} is not a list of names`);
  };
  if (name in attrs) return read(name);
  if (!(`${name}0` in attrs)) return undefined;
  const out: string[] = [];
  for (let i = 0; `${name}${i}` in attrs; i++) out.push(...read(`${name}${i}`));
  return out;
}

function toFloat32(d: Dataset, where: string): Float32Array {
  const v = d.value as unknown;
  if (v instanceof Float32Array) return v;
  if (v instanceof Float64Array || v instanceof Int32Array || v instanceof Int16Array || v instanceof Int8Array || v instanceof Uint8Array || v instanceof Uint16Array || v instanceof Uint32Array) {
    return Float32Array.from(v);
  }
  if (typeof v === 'number') return Float32Array.of(v);
  throw new UserError(`${where} has dtype ${d.dtype}, which occmap cannot read as float32`);
}

/** Read everything occmap needs from a Keras .h5: the model JSON and every layer's weights. */
export async function readKerasH5(file: string): Promise<KerasH5Contents> {
  sniff(file);
  const h = await h5();
  let f;
  try {
    f = new h.File(path.resolve(file), 'r');
  } catch (err) {
    throw fileError(file, `cannot read the HDF5 file (${summarizeHdf5Error(String((err as Error).message ?? err))})`);
  }
  try {
    const rootAttrs = f.attrs;
    if (!('model_config' in rootAttrs)) {
      throw fileError(file, "no model_config attribute (weights-only file?); save the whole model with model.save('x.h5')");
    }
    const text = attrText(rootAttrs.model_config.value);
    if (text === undefined) throw fileError(file, 'the model_config attribute is not a string');
    let modelConfig: KerasH5Contents['modelConfig'];
    try {
      modelConfig = JSON.parse(text);
    } catch (err) {
      throw fileError(file, `model_config is not valid JSON (${(err as Error).message})`);
    }
    if (!modelConfig || typeof modelConfig !== 'object' || typeof modelConfig.class_name !== 'string' || typeof modelConfig.config !== 'object') {
      throw fileError(file, 'model_config is not a Keras model description ({"class_name": ..., "config": ...})');
    }
    const kerasVersion = 'keras_version' in rootAttrs ? attrText(rootAttrs.keras_version.value) : undefined;
    const backend = 'backend' in rootAttrs ? attrText(rootAttrs.backend.value) : undefined;

    const mw = f.get('model_weights');
    if (!(mw instanceof h.Group)) throw fileError(file, 'no model_weights group (a model saved without its weights?)');
    const layerNames = namesAttr(mw, 'layer_names', () => `${file}: model_weights`);
    if (!layerNames) throw fileError(file, 'model_weights has no layer_names attribute');
    const weights = new Map<string, KerasWeightData[]>();
    for (const layer of layerNames) {
      const g = mw.get(layer);
      if (!(g instanceof h.Group)) throw fileError(file, `model_weights lists layer '${layer}' but has no group for it`);
      const names = namesAttr(g, 'weight_names', () => `${file}: model_weights/${layer}`) ?? [];
      weights.set(
        layer,
        names.map((name) => {
          const d = g.get(name);
          const where = `${file}: weight model_weights/${layer}/${name}`;
          if (!(d instanceof h.Dataset)) throw new UserError(`${where} is listed in weight_names but missing`);
          return { name, shape: d.shape ?? [], data: toFloat32(d, where) };
        }),
      );
    }
    return { modelConfig, kerasVersion, backend, layerNames, weights };
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw fileError(file, `cannot read the HDF5 file (${summarizeHdf5Error(String((err as Error).message ?? err))})`);
  } finally {
    try {
      f.close();
    } catch {
      // closing a file whose read failed can fail again; the first error is the one to report.
    }
  }
}

// ---------------------------------------------------------------------------------------------
// model_config -> tfjs topology

type Json = Record<string, unknown>;

const MODEL_CLASSES = new Set(['Sequential', 'Functional', 'Model']);

/** Python/Keras-only layers with a reason worth telling the user. */
const NOT_REBUILDABLE: Record<string, string> = {
  Lambda: 'a Lambda layer holds Python code',
  TFOpLambda: 'a TFOpLambda layer is a raw TensorFlow op call',
  SlicingOpLambda: 'a SlicingOpLambda layer is a raw TensorFlow op call',
};

function registeredClasses(): Set<string> {
  return new Set(Object.keys(tf.serialization.SerializationMap.getMap().classNameMap));
}

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Keras 2 model JSON in the dialect tfjs-layers deserializes. Returns a converted deep copy;
 * throws UserError (prefixed with `file`) for what tfjs would rebuild wrongly or not at all:
 * unsupported layer classes, grouped convolutions, multi-axis batch normalization, and
 * global pooling with keepdims. Also accepts the later spellings (`batch_shape`, dtype policy
 * objects, `module`/`registered_name` keys) where they carry the same meaning.
 */
export function kerasConfigForTfjs(modelConfig: unknown, file: string, known: Set<string> = registeredClasses()): Json {
  const copy = JSON.parse(JSON.stringify(modelConfig)) as Json;
  const fail = (msg: string): never => {
    throw fileError(file, msg);
  };

  const convertLayer = (entry: Json, where: string): void => {
    const cls = entry.class_name;
    if (typeof cls !== 'string' || !isObj(entry.config)) fail(`model_config: ${where} has no class_name/config`);
    const cfg = entry.config as Json;
    const name = typeof cfg.name === 'string' ? cfg.name : typeof entry.name === 'string' ? entry.name : where;
    const label = `layer '${name}' (${cls})`;
    if (MODEL_CLASSES.has(cls as string)) {
      convertModel(entry, `model '${name}'`);
      return;
    }
    if (NOT_REBUILDABLE[cls as string]) fail(`${label} cannot be rebuilt outside Python: ${NOT_REBUILDABLE[cls as string]}`);
    if (!known.has(cls as string)) fail(`unsupported layer class ${cls} (layer '${name}'): tfjs-layers has no such layer`);

    if ('batch_shape' in cfg && !('batch_input_shape' in cfg)) {
      cfg.batch_input_shape = cfg.batch_shape;
      delete cfg.batch_shape;
    }
    if (isObj(cfg.dtype)) {
      // A dtype policy: weights are float32 in every float policy (mixed precision keeps
      // float32 variables), and tfjs computes in float32.
      const pname = isObj(cfg.dtype.config) ? cfg.dtype.config.name : undefined;
      if (typeof pname !== 'string' || !/float/.test(pname)) fail(`${label}: unsupported dtype ${JSON.stringify(cfg.dtype)}`);
      cfg.dtype = 'float32';
    }
    if (typeof cfg.groups === 'number' && cfg.groups !== 1) fail(`${label}: grouped convolution (groups=${cfg.groups}) is not supported by tfjs`);
    if (cls === 'BatchNormalization' || cls === 'LayerNormalization') {
      if (Array.isArray(cfg.axis)) {
        if (cfg.axis.length !== 1) fail(`${label}: normalization over several axes [${cfg.axis.join(', ')}] is not supported`);
        cfg.axis = cfg.axis[0];
      }
    }
    if (/^Global(Average|Max)Pooling[123]D$/.test(cls as string) && cfg.keepdims === true) {
      fail(`${label}: keepdims=True is not supported by tfjs`);
    }
    if (Array.isArray(entry.inbound_nodes)) {
      for (const n of entry.inbound_nodes) {
        if (isObj(n)) fail(`${label}: inbound_nodes in the Keras 3 format; only Keras 2 (tf.keras) .h5 files are supported`);
      }
    }
    delete entry.module;
    delete entry.registered_name;
    delete entry.build_config;
  };

  const convertModel = (m: Json, where: string): void => {
    const cfg = m.config;
    // Sequential configs of Keras <= 2.2 are a bare list of layers.
    const layers = Array.isArray(cfg) ? cfg : isObj(cfg) ? cfg.layers : undefined;
    if (!Array.isArray(layers)) return fail(`model_config: ${where} has no layers`);
    layers.forEach((l, i) => {
      if (!isObj(l)) fail(`model_config: ${where}, layer ${i} is not an object`);
      convertLayer(l as Json, `${where}, layer ${i}`);
    });
    if (isObj(cfg)) {
      // A single input/output may be written unwrapped: ["name", 0, 0] for [["name", 0, 0]].
      for (const k of ['input_layers', 'output_layers']) {
        const v = cfg[k];
        if (Array.isArray(v) && typeof v[0] === 'string') cfg[k] = [v];
      }
    }
    delete m.module;
    delete m.registered_name;
    delete m.build_config;
  };

  if (typeof copy.class_name !== 'string' || !MODEL_CLASSES.has(copy.class_name)) {
    fail(`model_config describes a ${String(copy.class_name)}, expected a Sequential or Functional model`);
  }
  convertModel(copy, 'the model');
  return copy;
}

// ---------------------------------------------------------------------------------------------
// Weights

/** `conv2d/kernel:0` -> ['conv2d', 'kernel']. */
function nameParts(name: string): string[] {
  return name.replace(/:\d+$/, '').split('/').filter((s) => s.length > 0);
}

function trailingMatch(a: string[], b: string[]): number {
  let k = 0;
  while (k < a.length && k < b.length && a[a.length - 1 - k] === b[b.length - 1 - k]) k++;
  return k;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * For each model weight (tfjs order), the index of the file weight it takes. A file weight
 * qualifies when its name ends like the model weight's (kernel, bias, gamma, ...; longer
 * matches win, so nested models' `block1/conv/kernel` picks the right one) and its shape is
 * the same. Ties fall to the one in the same position, as Keras itself loads them. Throws
 * a message (without file prefix) naming the weight that has no or no unique match.
 */
export function matchWeights(
  model: readonly { name: string; shape: readonly number[] }[],
  file: readonly { name: string; shape: readonly number[] }[],
): number[] {
  if (model.length !== file.length) {
    throw new Error(`the file has ${file.length} weight(s) [${file.map((w) => w.name).join(', ')}], the model ${model.length} [${model.map((w) => w.name).join(', ')}]`);
  }
  const used = new Set<number>();
  return model.map((mw, i) => {
    const mp = nameParts(mw.name);
    let best = 0;
    let candidates: number[] = [];
    file.forEach((fw, j) => {
      if (used.has(j)) return;
      const s = trailingMatch(mp, nameParts(fw.name));
      if (s === 0) return;
      if (s > best) {
        best = s;
        candidates = [j];
      } else if (s === best) candidates.push(j);
    });
    if (candidates.length === 0) throw new Error(`no weight in the file is named like '${mw.name}' (file: ${file.map((w) => w.name).join(', ')})`);
    const fitting = candidates.filter((j) => sameShape(file[j].shape, mw.shape));
    if (fitting.length === 0) {
      const j = candidates[0];
      throw new Error(`weight '${file[j].name}' has shape [${file[j].shape.join(', ')}], the model's '${mw.name}' needs [${mw.shape.join(', ')}]`);
    }
    const pick = fitting.length === 1 ? fitting[0] : fitting.includes(i) ? i : -1;
    if (pick < 0) throw new Error(`weight '${mw.name}' matches several file weights (${fitting.map((j) => file[j].name).join(', ')})`);
    used.add(pick);
    return pick;
  });
}

function setLayerWeights(model: tfl.LayersModel, contents: KerasH5Contents, file: string): void {
  const byName = new Map(model.layers.map((l) => [l.name, l]));
  const seen = new Set<string>();
  for (const layerName of contents.layerNames) {
    const fileWeights = contents.weights.get(layerName) ?? [];
    const layer = byName.get(layerName);
    if (!layer) {
      if (fileWeights.length === 0) continue;
      throw fileError(file, `model_weights has weights for layer '${layerName}', which model_config does not have`);
    }
    seen.add(layerName);
    const targets = layer.weights.map((w) => ({ name: w.originalName, shape: w.shape as number[] }));
    let order: number[];
    try {
      order = matchWeights(targets, fileWeights);
    } catch (err) {
      throw fileError(file, `layer '${layerName}': ${(err as Error).message}`);
    }
    if (order.length === 0) continue;
    const tensors = order.map((j) => tf.tensor(fileWeights[j].data, fileWeights[j].shape, 'float32'));
    try {
      layer.setWeights(tensors);
    } finally {
      tf.dispose(tensors);
    }
  }
  for (const l of model.layers) {
    if (l.weights.length > 0 && !seen.has(l.name)) throw fileError(file, `model_weights has no weights for layer '${l.name}' (${l.getClassName()})`);
  }
}

// ---------------------------------------------------------------------------------------------
// Public API

/** Rebuild a Keras 2 .h5 model as a tfjs LayersModel with the file's weights. */
export async function loadKerasH5(file: string): Promise<tfl.LayersModel> {
  const contents = await readKerasH5(file);
  if (contents.kerasVersion && /^[01]\./.test(contents.kerasVersion)) {
    throw fileError(file, `saved by Keras ${contents.kerasVersion}; only Keras 2 (tf.keras 2.x) .h5 files are supported`);
  }
  const topology = kerasConfigForTfjs(contents.modelConfig, file);
  let model: tfl.LayersModel;
  try {
    model = await tfl.models.modelFromJSON({ modelTopology: topology as tf.io.ModelJSON['modelTopology'] });
  } catch (err) {
    throw fileError(file, `cannot rebuild the model in tfjs (${String((err as Error).message ?? err).split('\n')[0]})`);
  }
  try {
    setLayerWeights(model, contents, file);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}
