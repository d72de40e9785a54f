/**
 * The model-directory format, owned here and nowhere else:
 *
 *   model.json + weights.bin   the standard tfjs layers format (what tfjs-node's file://
 *                              handler and tensorflowjs_converter write, so Python/JS tools can
 *                              read them; tfjs-node is not available, so a small IOHandler over
 *                              node:fs does the file work)
 *   model.onnx                 the ONNX export of the same weights (what ONNX Runtime runs)
 *   card.json                  occmap's record: what the model is, how it was made, `hash` (the
 *                              tfjs content id used for provenance) and `files` (sha256 of every
 *                              model file, members' files included, checked at every load)
 *   member-<k>/                ensembles (explainers): one such directory per member
 *
 * and the engine choice: a directory runs on ONNX Runtime from its model.onnx when the card
 * vouches for those bytes, else from the tfjs weights converted to ONNX at load, and on tfjs
 * only when asked or when a layer has no ONNX converter.
 *
 * A model directory is written whole or not at all: everything goes into a temp directory
 * beside the target, which is renamed into place at the end.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, createReadStream } from 'node:fs';
import path from 'node:path';
import { initTf, tf, tfl, type BackendChoice } from '../runtime/tfjs.js';
// registers the log-rest explainer's last layer, so models that end in it load
import './map-head.js';
import { exportModelToOnnx, modelToOnnx, META_SOURCE_HASH, type OnnxExportOptions } from './to-onnx.js';
import { fileError, UserError, OptionError } from '../util/errors.js';
import { removeStaleTemps, writeFileAtomicSync } from '../util/atomic.js';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
export const CARD_JSON = 'card.json';
export const MODEL_ONNX = 'model.onnx';

/** What occmap records beside a model; `channels` tells predictors which data channels to feed. */
export interface ModelCard {
  kind: string;
  occmapVersion: string;
  createdAt: string;
  /** sha256 of model.json followed by the weight files (filled by saveModelDir). */
  hash?: string;
  /**
   * sha256 (hex) of every model file, by path relative to the directory (model.json, the
   * weight files, model.onnx, members' files as 'member-0/weights.bin'). Filled by writeCard;
   * absent in cards written before occmap checked integrity.
   */
  files?: Record<string, string>;
  inputShape?: number[];
  numClasses?: number;
  channels?: number[];
  channelNames?: string[];
  parameters?: number;
  /** What the first output holds (probabilities unless said otherwise). */
  outputs?: 'probs' | 'logits';
  /** Ensembles: the number of members, and each member's directory (relative) and hash. */
  ensemble?: number;
  members?: { dir: string; hash?: string; [key: string]: unknown }[];
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
  removeStaleTemps(dir); // staging directories of killed runs
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
 * directory (tfjs files, model.onnx when `onnx` is set, card.json with every file's hash) is in
 * place or nothing changed. Returns the model hash (also stored in the card).
 */
export async function saveModelDir(
  model: tfl.LayersModel,
  dir: string,
  card: ModelCard,
  o: { force?: boolean; onnx?: boolean | OnnxExportOptions } = {},
): Promise<{ hash: string; card: ModelCard }> {
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
    if (o.onnx) {
      // Inside the staged directory, so no installed directory ever lacks its export.
      const extra = typeof o.onnx === 'object' ? o.onnx : {};
      await exportModelToOnnx(model, path.join(tmp, MODEL_ONNX), { ...extra, metadata: { ...extra.metadata, [META_SOURCE_HASH]: hash } });
    }
    const written = writeCard(tmp, card);
    installDir(tmp, dir, o.force ?? false);
    installed = true;
    return { hash, card: written };
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
  const problem = cardProblem(card);
  if (problem) throw fileError(file, problem);
  return card;
}

/** What is wrong with a parsed card.json (the fields occmap relies on), or null. Pure. */
export function cardProblem(card: unknown): string | null {
  if (!card || typeof card !== 'object' || Array.isArray(card)) return 'is not a JSON object';
  const c = card as ModelCard;
  if (c.channels !== undefined && !(Array.isArray(c.channels) && c.channels.every((k) => Number.isInteger(k) && k >= 0))) {
    return "'channels' must be a list of non-negative channel indices";
  }
  if (c.hash !== undefined && typeof c.hash !== 'string') return "'hash' must be a string";
  if (c.files !== undefined) {
    if (!c.files || typeof c.files !== 'object' || Array.isArray(c.files)) return "'files' must map file names to sha256 hashes";
    for (const [name, h] of Object.entries(c.files)) {
      if (typeof h !== 'string' || !/^[0-9a-f]{64}$/.test(h)) return `'files'.'${name}' must be a sha256 hash (64 hex digits), got ${JSON.stringify(h)}`;
    }
  }
  if (c.outputs !== undefined && c.outputs !== 'probs' && c.outputs !== 'logits') return `'outputs' must be 'probs' or 'logits', got ${JSON.stringify(c.outputs)}`;
  if (c.ensemble !== undefined && !(Number.isInteger(c.ensemble) && c.ensemble >= 1)) return `'ensemble' must be a positive integer, got ${JSON.stringify(c.ensemble)}`;
  if (c.members !== undefined && !(Array.isArray(c.members) && c.members.every((m) => m && typeof m === 'object' && typeof m.dir === 'string'))) {
    return "'members' must be a list of { dir, hash }";
  }
  return null;
}

// ---------------------------------------------------------------- integrity: card.json `files`

function sha256Of(file: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw fileError(file, `cannot read (${errCode(err)})`);
  }
  return createHash('sha256').update(bytes).digest('hex');
}

/** Model files of one directory, relative: model.json and its weight files (when tfjs), model.onnx (when present). */
function ownModelFiles(dir: string): string[] {
  const names: string[] = [];
  if (existsSync(path.join(dir, MODEL_JSON))) {
    const { json, file } = readModelJson(dir);
    names.push(MODEL_JSON, ...weightFiles(dir, json, file).map((f) => path.relative(dir, f)));
  }
  if (existsSync(path.join(dir, MODEL_ONNX))) names.push(MODEL_ONNX);
  return names;
}

/** The member directories an ensemble card names (relative to its directory); [] for one model. */
export function memberNames(card: ModelCard, dir: string): string[] {
  if (!card.ensemble || card.ensemble <= 1) return [];
  const file = path.join(dir, CARD_JSON);
  const names = card.members ? card.members.map((m) => m.dir) : Array.from({ length: card.ensemble }, (_, k) => `member-${k}`);
  if (names.length !== card.ensemble) throw fileError(file, `lists ${names.length} members for an ensemble of ${card.ensemble}`);
  for (const n of names) {
    if (path.dirname(path.resolve(dir, n)) !== path.resolve(dir)) throw fileError(file, `member '${n}' is outside the directory`);
  }
  return names;
}

/**
 * sha256 of every model file of `dir` (members' files as 'member-0/weights.bin') and of the
 * `extra` files named (e.g. a fused graph), by relative path, sorted.
 */
export function fileHashes(dir: string, card: ModelCard, extra: readonly string[] = []): Record<string, string> {
  const names = ownModelFiles(dir);
  for (const m of memberNames(card, dir)) names.push(...ownModelFiles(path.join(dir, m)).map((f) => `${m}/${f}`));
  names.push(...extra);
  const out: Record<string, string> = {};
  for (const n of [...new Set(names)].sort()) out[n] = sha256Of(path.join(dir, n));
  return out;
}

/**
 * Write dir/card.json (atomically) from `card`, with `hash` (tfjs directories) and `files`
 * computed from what the directory holds now: its model files, its members' files, the files
 * `card.files` already names that still exist, and `extraFiles`. Returns the card written.
 */
export function writeCard(dir: string, card: ModelCard, o: { extraFiles?: readonly string[] } = {}): ModelCard {
  const out: ModelCard = { ...card };
  if (existsSync(path.join(dir, MODEL_JSON))) out.hash = hashModelDir(dir);
  const kept = Object.keys(card.files ?? {}).filter((n) => existsSync(path.join(dir, n)));
  out.files = fileHashes(dir, out, [...kept, ...(o.extraFiles ?? [])]);
  writeFileAtomicSync(path.join(dir, CARD_JSON), JSON.stringify(out, null, 2) + '\n');
  return out;
}

const CORRUPTED = 'the model directory is corrupted or was edited; retrain or restore it';

/** Check each file a card records against its sha256; throws naming the first that is missing or differs. */
export function verifyFiles(dir: string, files: Record<string, string>): void {
  const root = path.resolve(dir);
  for (const [name, want] of Object.entries(files)) {
    const f = path.resolve(root, name);
    if (!f.startsWith(root + path.sep)) throw fileError(path.join(dir, CARD_JSON), `'files' names '${name}', outside the directory`);
    if (!existsSync(f)) throw fileError(f, `is missing but card.json records it (sha256 ${want.slice(0, 12)}...): ${CORRUPTED}`);
    const got = sha256Of(f);
    if (got !== want) throw fileError(f, `does not match card.json (sha256 ${got.slice(0, 12)}..., card.json records ${want.slice(0, 12)}...): ${CORRUPTED}`);
  }
}

/** One model directory (a classifier, an explainer, or one member), its files checked against its card. */
export interface VerifiedModelDir {
  dir: string;
  card?: ModelCard;
  /** sha256 of model.json + weights: the model's identity, recorded in outputs for provenance. */
  hash: string;
  /** model.onnx when card.json vouches for its bytes (then it is the same model); else undefined. */
  onnx?: string;
  /** One-line notes for the user (integrity that could not be checked, a file not used). */
  notes: string[];
}

/**
 * Verify a tfjs model directory: every file card.json records has the recorded sha256, every
 * model file is recorded, and model.json + weights match the card's `hash`. Mismatches throw
 * a one-line UserError naming the file. Cards from before `files` existed, and directories
 * without a card, load with a note: their model.onnx cannot be vouched for and is not used.
 */
export function verifyModelDir(dir: string): VerifiedModelDir {
  if (!existsSync(dir)) throw fileError(dir, 'does not exist');
  if (!statSync(dir).isDirectory()) throw fileError(dir, 'is not a directory');
  if (!existsSync(path.join(dir, MODEL_JSON))) throw fileError(dir, `is not a model directory (no ${MODEL_JSON})`);
  const card = readCard(dir);
  const notes: string[] = [];
  let onnx: string | undefined;
  const hasOnnx = existsSync(path.join(dir, MODEL_ONNX));
  if (card?.files) {
    verifyFiles(dir, card.files);
    for (const f of ownModelFiles(dir)) {
      if (f in card.files) continue;
      if (f !== MODEL_ONNX) throw fileError(path.join(dir, f), `is not recorded in card.json: ${CORRUPTED}`);
      notes.push(`${path.join(dir, f)} is not recorded in card.json: not used (the tfjs weights are converted at load instead)`);
    }
    if (card.files[MODEL_ONNX]) onnx = path.join(dir, MODEL_ONNX);
  } else {
    const what = card ? 'card.json records no file hashes (written by an older occmap)' : 'no card.json';
    notes.push(`${dir}: ${what}: the integrity of its files cannot be fully checked${hasOnnx ? '; model.onnx is not used' : ''}`);
  }
  const hash = hashModelDir(dir);
  if (card?.hash !== undefined && card.hash !== hash) {
    throw fileError(dir, `model.json + weights do not match card.json (sha256 ${hash.slice(0, 12)}..., card.json records ${card.hash.slice(0, 12)}...): ${CORRUPTED}`);
  }
  return { dir, card, hash, onnx, notes };
}

/** A model directory opened for use: its card and its member directories (itself when not an ensemble), verified. */
export interface OpenedModelDir {
  dir: string;
  card?: ModelCard;
  members: VerifiedModelDir[];
  notes: string[];
}

/** Open and verify a model directory, an ensemble's members included (see verifyModelDir). */
export function openModelDir(dir: string): OpenedModelDir {
  if (!existsSync(dir)) throw fileError(dir, 'does not exist');
  if (!statSync(dir).isDirectory()) throw fileError(dir, 'is not a directory');
  const card = readCard(dir);
  const names = card ? memberNames(card, dir) : [];
  if (!card || names.length === 0) {
    const v = verifyModelDir(dir);
    return { dir, card: v.card, members: [v], notes: v.notes };
  }
  const notes: string[] = [];
  if (card.files) verifyFiles(dir, card.files);
  else notes.push(`${dir}: card.json records no file hashes (written by an older occmap): the integrity of its members cannot be fully checked; their model.onnx files are not used`);
  const members = names.map((n, k) => {
    const v = verifyModelDir(path.resolve(dir, n));
    const want = card.members?.[k]?.hash;
    if (typeof want === 'string' && want !== v.hash) {
      throw fileError(v.dir, `does not match the member hash in ${path.join(dir, CARD_JSON)} (sha256 ${v.hash.slice(0, 12)}..., recorded ${want.slice(0, 12)}...): ${CORRUPTED}`);
    }
    if (card.files) notes.push(...v.notes);
    return v;
  });
  return { dir, card, members, notes: [...new Set(notes)] };
}

// ---------------------------------------------------------------- the engine choice

export type EngineChoice = 'auto' | 'onnx' | 'tfjs';

export const ENGINE_CHOICES: readonly EngineChoice[] = ['auto', 'onnx', 'tfjs'];

/** What a model runs as: ONNX (a file, or bytes converted at load) or a tfjs LayersModel. */
export type ModelRun =
  | { engine: 'onnx'; model: string | Uint8Array; converted: boolean }
  | { engine: 'tfjs'; model: tfl.LayersModel };

export interface RunOptions {
  /** tfjs backend when the tfjs weights are loaded. */
  backend?: BackendChoice;
  /** Receives one-line notes (e.g. a fallback to tfjs). */
  note?: (line: string) => void;
}

export function checkEngineChoice(engine: unknown, field = 'engine'): EngineChoice {
  if (engine === undefined) return 'auto';
  if (!ENGINE_CHOICES.includes(engine as EngineChoice)) throw new OptionError([field], `must be auto, onnx or tfjs, got ${JSON.stringify(engine)}`);
  return engine as EngineChoice;
}

/**
 * The ONNX form of an in-memory tfjs model (converted with the exporter; the model is then
 * disposed unless `keepModel`), or the model itself on tfjs when a layer has no ONNX converter ('auto', with a
 * note) or when 'tfjs' is asked. 'onnx' and an unconvertible layer: a UserError naming `source`.
 */
export function layersModelRun(
  model: tfl.LayersModel,
  choice: EngineChoice,
  source: string,
  o: RunOptions & { metadata?: Record<string, string>; keepModel?: boolean } = {},
): ModelRun {
  if (choice === 'tfjs') return { engine: 'tfjs', model };
  let bytes: Uint8Array;
  try {
    bytes = modelToOnnx(model, { metadata: o.metadata }).bytes;
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    if (choice === 'onnx') {
      if (!o.keepModel) model.dispose();
      throw fileError(source, `cannot run on ONNX Runtime (${err.message}); use engine 'tfjs'`);
    }
    o.note?.(`${source}: runs on tfjs (slower than ONNX Runtime): ${err.message}`);
    return { engine: 'tfjs', model };
  }
  if (!o.keepModel) model.dispose();
  return { engine: 'onnx', model: bytes, converted: true };
}

/**
 * What a verified directory runs: its model.onnx when card.json vouches for those bytes;
 * otherwise its tfjs weights, converted to ONNX at load (see layersModelRun); tfjs when asked.
 */
export async function modelDirRun(v: VerifiedModelDir, choice: EngineChoice, o: RunOptions = {}): Promise<ModelRun> {
  if (choice !== 'tfjs' && v.onnx) return { engine: 'onnx', model: v.onnx, converted: false };
  await initTf(o.backend ?? 'auto');
  const model = await loadModelDir(v.dir);
  return layersModelRun(model, choice, v.dir, { ...o, metadata: { [META_SOURCE_HASH]: v.hash } });
}

/**
 * The ONNX file that is this model, for clients that ship the file itself (the browser viewer):
 * an .onnx path as given, or a directory's model.onnx when its card vouches for the bytes.
 * Throws a one-line UserError when there is none (`what` names the model in the message).
 */
export function vouchedOnnxFile(modelPath: string, what: string): string {
  if (!existsSync(modelPath)) throw fileError(modelPath, 'does not exist');
  if (!statSync(modelPath).isDirectory()) return modelPath;
  const v = verifyModelDir(modelPath);
  if (v.onnx) return v.onnx;
  const present = existsSync(path.join(modelPath, MODEL_ONNX));
  const what2 = present ? 'has a model.onnx that card.json does not vouch for (an older occmap, or another model\'s export)' : 'has no model.onnx';
  throw fileError(modelPath, `${what2}: the browser runs the ${what}'s ONNX export; retrain it with this occmap`);
}
