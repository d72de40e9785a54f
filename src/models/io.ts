/**
 * Model directories on disk: `model.json` + `weights.bin` in the standard tfjs layers format
 * (what tfjs-node's file:// handler and tensorflowjs_converter write, so Python/JS tools can
 * read them), plus occmap's `card.json`. tfjs-node is not available here, so a small IOHandler
 * over node:fs does the file work.
 *
 * A model directory is written whole or not at all: everything goes into a temp directory
 * beside the target, which is renamed into place at the end.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, createReadStream } from 'node:fs';
import path from 'node:path';
import { tf, tfl } from '../runtime/tfjs.js';
import { fileError, UserError } from '../util/errors.js';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
export const CARD_JSON = 'card.json';

/** What occmap records beside a model; `channels` tells predictors which data channels to feed. */
export interface ModelCard {
  kind: string;
  occmapVersion: string;
  createdAt: string;
  /** sha256 of model.json followed by the weight files (filled by saveModelDir). */
  hash?: string;
  inputShape?: number[];
  numClasses?: number;
  channels?: number[];
  channelNames?: string[];
  parameters?: number;
  [key: string]: unknown;
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/** An IOHandler reading/writing `dir/model.json` + `dir/weights.bin` (dir must exist to save). */
export function fsHandler(dir: string): tf.io.IOHandler {
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new Error('saving binary (graph-model) topologies is not supported');
      }
      const weights = artifacts.weightData ? new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData)) : new Uint8Array(0);
      const modelJSON: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology ?? {},
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? [] }],
      };
      if (artifacts.trainingConfig) modelJSON.trainingConfig = artifacts.trainingConfig;
      if (artifacts.signature) modelJSON.signature = artifacts.signature;
      if (artifacts.userDefinedMetadata) modelJSON.userDefinedMetadata = artifacts.userDefinedMetadata;
      if (artifacts.modelInitializer) modelJSON.modelInitializer = artifacts.modelInitializer;
      writeFileSync(path.join(dir, WEIGHTS_BIN), weights);
      // model.json last: its presence marks a complete model.
      writeFileSync(path.join(dir, MODEL_JSON), JSON.stringify(modelJSON));
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },

    async load(): Promise<tf.io.ModelArtifacts> {
      const { json, file } = readModelJson(dir);
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const parts = weightFiles(dir, json, file).map((f) => {
          try {
            return readFileSync(f);
          } catch (err) {
            throw fileError(f, `cannot read weights (${errCode(err)})`);
          }
        });
        const total = parts.reduce((a, p) => a + p.length, 0);
        const specs = tf.io.getWeightSpecs(manifest);
        const expected = specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1) * bytesPer(s.dtype, s.quantization), 0);
        // NaN when a string weight (variable length) is present: nothing to check then.
        if (!Number.isNaN(expected) && total !== expected) throw fileError(path.join(dir, WEIGHTS_BIN), `holds ${total} bytes, model.json describes ${expected}`);
        const buf = new Uint8Array(total);
        let off = 0;
        for (const p of parts) {
          buf.set(p, off);
          off += p.length;
        }
        return [specs, buf.buffer];
      });
    },
  };
}

function bytesPer(dtype: string, q?: { dtype?: string }): number {
  if (q?.dtype) return q.dtype === 'uint8' ? 1 : 2;
  if (dtype === 'string') return NaN;
  return dtype === 'bool' ? 1 : dtype === 'complex64' ? 8 : 4;
}

function readModelJson(dir: string): { json: tf.io.ModelJSON; file: string } {
  const file = path.join(dir, MODEL_JSON);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw fileError(dir, `not a tfjs model directory (cannot read ${MODEL_JSON}: ${errCode(err)})`);
  }
  let json: tf.io.ModelJSON;
  try {
    json = JSON.parse(text);
  } catch {
    throw fileError(file, 'is not valid JSON');
  }
  if (!json || typeof json !== 'object' || !json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw fileError(file, 'is not a tfjs model.json (needs modelTopology and weightsManifest)');
  }
  return { json, file };
}

/** The weight files a model.json names, resolved inside its directory. */
function weightFiles(dir: string, json: tf.io.ModelJSON, file: string): string[] {
  const out: string[] = [];
  for (const group of json.weightsManifest) {
    for (const p of group.paths ?? []) {
      const f = path.resolve(dir, p);
      if (path.dirname(f) !== path.resolve(dir)) throw fileError(file, `weights path '${p}' points outside the model directory`);
      out.push(f);
    }
  }
  return out;
}

/** sha256 (hex) of model.json followed by its weight files: identifies a model's content. */
export function hashModelDir(dir: string): string {
  const { json, file } = readModelJson(dir);
  const h = createHash('sha256');
  h.update(readFileSync(file));
  for (const f of weightFiles(dir, json, file)) {
    try {
      h.update(readFileSync(f));
    } catch (err) {
      throw fileError(f, `cannot read weights (${errCode(err)})`);
    }
  }
  return h.digest('hex');
}

/** sha256 (hex) of a file, streamed (datasets can be large). */
export async function hashFile(file: string): Promise<string> {
  const h = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  } catch (err) {
    throw fileError(file, `cannot read (${errCode(err)})`);
  }
  return h.digest('hex');
}

export function isModelDir(dir: string): boolean {
  return existsSync(path.join(dir, MODEL_JSON));
}

/**
 * Fail before any work when `dir` cannot receive a model: its parent must exist, and `dir`
 * must be absent, empty, or replaceable (`force`).
 */
export function assertModelDirWritable(dir: string, force = false): void {
  const parent = path.dirname(path.resolve(dir));
  if (!existsSync(parent) || !statSync(parent).isDirectory()) throw fileError(dir, `parent directory ${parent} does not exist`);
  try {
    accessSync(parent, constants.W_OK);
  } catch {
    throw fileError(dir, `parent directory ${parent} is not writable`);
  }
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw fileError(dir, 'exists and is not a directory');
  if (readdirSync(dir).length > 0 && !force) throw fileError(dir, 'exists and is not empty (use --force to replace it)');
}

/** A temp path beside `dir` (same filesystem, so a rename into place is atomic). */
export function siblingTemp(dir: string, tag: string): string {
  const abs = path.resolve(dir);
  return path.join(path.dirname(abs), `.${path.basename(abs)}.${tag}.${process.pid}.${Date.now()}.tmp`);
}

/**
 * Save `model` and `card` as the directory `dir`, atomically: either the complete new
 * directory is in place or nothing changed. Returns the model hash (also stored in the card).
 */
export async function saveModelDir(
  model: tfl.LayersModel,
  dir: string,
  card: ModelCard,
  o: { force?: boolean } = {},
): Promise<{ hash: string }> {
  assertModelDirWritable(dir, o.force);
  const tmp = siblingTemp(dir, 'new');
  try {
    mkdirSync(tmp);
  } catch (err) {
    throw fileError(dir, `cannot create a directory beside it (${errCode(err)})`);
  }
  let installed = false;
  try {
    await model.save(fsHandler(tmp));
    const hash = hashModelDir(tmp);
    writeFileSync(path.join(tmp, CARD_JSON), JSON.stringify({ ...card, hash }, null, 2) + '\n');
    installDir(tmp, dir, o.force ?? false);
    installed = true;
    return { hash };
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw fileError(dir, `cannot save model (${errCode(err)})`);
  } finally {
    if (!installed) rmSync(tmp, { recursive: true, force: true });
  }
}

/** Put a fully written directory in place of `dir`; a non-empty `dir` is replaced only with force. */
export function installDir(tmp: string, dir: string, force: boolean): void {
  let old: string | null = null;
  if (existsSync(dir)) {
    if (readdirSync(dir).length === 0) rmSync(dir, { recursive: true });
    else if (!force) throw fileError(dir, 'exists and is not empty (use --force to replace it)');
    else {
      old = siblingTemp(dir, 'old');
      renameSync(dir, old);
    }
  }
  try {
    renameSync(tmp, dir);
  } catch (err) {
    if (old) renameSync(old, dir);
    throw err;
  }
  if (old) rmSync(old, { recursive: true, force: true });
}

/** Load a tfjs LayersModel directory written by occmap (or any tfjs layers model.json + weights). */
export async function loadModelDir(dir: string): Promise<tfl.LayersModel> {
  if (!existsSync(dir)) throw fileError(dir, 'does not exist');
  if (!statSync(dir).isDirectory()) throw fileError(dir, 'is not a directory');
  readModelJson(dir); // clear error before tfjs sees it
  try {
    return await tfl.loadLayersModel(fsHandler(dir));
  } catch (err) {
    if (err instanceof UserError) throw err;
    const msg = ((err as Error).message ?? String(err)).split('\n')[0];
    throw fileError(path.join(dir, MODEL_JSON), `cannot load the tfjs model (${msg})`);
  }
}

/** card.json of a model directory, or undefined when the directory has none. */
export function readCard(dir: string): ModelCard | undefined {
  const file = path.join(dir, CARD_JSON);
  if (!existsSync(file)) return undefined;
  let card: ModelCard;
  try {
    card = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw fileError(file, 'is not valid JSON');
  }
  if (!card || typeof card !== 'object' || Array.isArray(card)) throw fileError(file, 'is not a JSON object');
  if (card.channels !== undefined && !(Array.isArray(card.channels) && card.channels.every((c) => Number.isInteger(c) && c >= 0))) {
    throw fileError(file, "'channels' must be a list of non-negative channel indices");
  }
  return card;
}
