/**
 * The two baselines any explainer must beat, as attribution methods with the same call shape:
 *   - MeanMap: the mean training map, the same map for every image (what a collapsed
 *     autoencoder outputs);
 *   - SnrSaliency: |SNR difference| as saliency (bright residuals = important, no model).
 * They compute what `evaluate` reports for them (the pure functions of explainer/evaluate.ts).
 */
import type { Dataset } from '../data/dataset.js';
import type { ImagesInput } from '../data/images.js';
import { toImageBatch } from '../data/images.js';
import { absChannel, meanMap, saliencyAsMap, snrChannelOf, type SnrCentre } from '../explainer/evaluate.js';
import type { MapNormalize, MapScore } from '../metrics/compare.js';
import type { Predictor } from '../models/predictor.js';
import { UserError } from '../util/errors.js';
import { targetsFor, type Attribution, type AttributeOptions, type AttributionMethod } from './attribution.js';

export interface MeanMapOptions {
  /** Rows of `maps` to average (default: all). */
  indices?: readonly number[];
  /** Orientation and normalisation of the maps averaged (default: the dataset's meta.occlusion). */
  score?: MapScore;
  normalize?: MapNormalize;
  /** Classifier, for targets and probabilities in the results. */
  model?: Predictor;
}

export class MeanMap implements AttributionMethod {
  readonly name = 'meanMap';
  /** The mean map, h*w. */
  readonly map: Float32Array;
  readonly h: number;
  readonly w: number;
  readonly score: MapScore;
  readonly normalize: MapNormalize;
  private readonly model?: Predictor;

  /** `maps`: (N,H,W) training maps; the mean of the rows `opts.indices`. */
  constructor(maps: { data: Float32Array; shape: readonly number[] }, opts: MeanMapOptions & { score: MapScore }) {
    if (maps.shape.length !== 3) throw new UserError(`MeanMap: maps shape [${maps.shape.join(',')}] is not [N,H,W]`);
    const [n, h, w] = maps.shape;
    if (maps.data.length !== n * h * w) throw new UserError(`MeanMap: ${maps.data.length} values for maps of shape [${maps.shape.join(',')}]`);
    const idx = opts.indices ?? Array.from({ length: n }, (_, i) => i);
    const bad = idx.find((i) => !(Number.isInteger(i) && i >= 0 && i < n));
    if (bad !== undefined) throw new UserError(`MeanMap: index ${bad} is not a row of the ${n} maps`);
    if (idx.length === 0) throw new UserError('MeanMap: no maps to average');
    this.map = Float32Array.from(meanMap(maps.data, h * w, idx));
    this.h = h;
    this.w = w;
    this.score = opts.score;
    this.normalize = opts.normalize ?? 'none';
    this.model = opts.model;
  }

  /** The mean of a maps dataset (an `occlude` output): its maps and meta.occlusion's units. */
  static fromDataset(ds: Dataset, opts: MeanMapOptions = {}): MeanMap {
    if (!ds.maps) throw new UserError("MeanMap: the dataset has no maps (an 'occmap occlude' output is needed)");
    const occ = ds.meta.occlusion ?? {};
    const score = opts.score ?? (occ.score === 'drop' ? 'drop' : occ.score === 'prob' ? 'prob' : undefined);
    if (!score) throw new UserError("MeanMap: the dataset does not say how its maps were scored (meta.occlusion.score): give { score: 'prob' | 'drop' }");
    const normalize = opts.normalize ?? (occ.normalize === 'seed' ? 'seed' : 'none');
    const [n, h, w] = ds.shape;
    return new MeanMap({ data: ds.maps, shape: [n, h, w] }, { ...opts, score, normalize });
  }

  async attribute(images: ImagesInput, opts: AttributeOptions = {}): Promise<Attribution> {
    const batch = toImageBatch(images);
    const [n, h, w] = batch.shape;
    if (h !== this.h || w !== this.w) throw new UserError(`MeanMap: images are ${h}x${w}, the mean map is ${this.h}x${this.w}`);
    const data = new Float32Array(n * h * w);
    for (let i = 0; i < n; i++) data.set(this.map, i * h * w);
    const t = await targetsFor(batch, opts.target ?? 'predicted', this.model);
    opts.onProgress?.(n, n);
    return { data, shape: [n, h, w], score: this.score, normalize: this.normalize, ...t, method: this.name };
  }
}

export interface SnrSaliencyOptions {
  /** The data channel holding the SNR difference (default: the only channel, or one named 'snr' in `channelNames`). */
  channel?: number;
  channelNames?: readonly string[];
  /** |x| ('zero', default) or |x - the stamp's median| ('median'). */
  centre?: SnrCentre;
  /**
   * Orientation of the maps it is compared with (default 'drop': high = important). For
   * 'prob' the map is -|SNR|, so it is low where important like a probability map.
   */
  score?: MapScore;
  model?: Predictor;
}

export class SnrSaliency implements AttributionMethod {
  readonly name = 'snrSaliency';
  private readonly o: SnrSaliencyOptions;

  constructor(opts: SnrSaliencyOptions = {}) {
    if (opts.channel !== undefined && !(Number.isInteger(opts.channel) && opts.channel >= 0)) throw new UserError(`SnrSaliency: channel must be a channel index, got ${opts.channel}`);
    if (opts.centre !== undefined && opts.centre !== 'zero' && opts.centre !== 'median') throw new UserError(`SnrSaliency: centre must be 'zero' or 'median', got ${JSON.stringify(opts.centre)}`);
    if (opts.score !== undefined && opts.score !== 'prob' && opts.score !== 'drop') throw new UserError(`SnrSaliency: score must be 'prob' or 'drop', got ${JSON.stringify(opts.score)}`);
    this.o = opts;
  }

  /**
   * Maps in seed units and the given orientation; `importance` is |SNR| itself (its unclipped
   * order, so the seed clip's ties do not decide the top pixels), as evaluate ranks it.
   */
  async attribute(images: ImagesInput, opts: AttributeOptions = {}): Promise<Attribution> {
    const batch = toImageBatch(images);
    const [n, h, w, c] = batch.shape;
    const ch = this.o.channel ?? snrChannelOf(c, this.o.channelNames as string[] | undefined, this.o.model?.channels);
    if (ch === undefined) throw new UserError(`SnrSaliency: cannot tell which of the ${c} channels is the SNR difference: give { channel }`);
    if (ch >= c) throw new UserError(`SnrSaliency: channel ${ch} but the images have ${c} channel(s)`);
    const score = this.o.score ?? 'drop';
    const hw = h * w;
    const data = new Float32Array(n * hw);
    const importance = new Float32Array(n * hw);
    for (let i = 0; i < n; i++) {
      const sal = absChannel(batch.data.subarray(i * hw * c, (i + 1) * hw * c), hw, c, ch, this.o.centre ?? 'zero');
      importance.set(sal, i * hw);
      data.set(saliencyAsMap(sal, score), i * hw);
    }
    const t = await targetsFor(batch, opts.target ?? 'predicted', this.o.model);
    opts.onProgress?.(n, n);
    return { data, shape: [n, h, w], score, normalize: 'seed', importance, ...t, method: this.name };
  }
}
