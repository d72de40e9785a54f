/**
 * The explainer's estimate, engine-free and pure (no I/O): pick the explainer's channels, pad
 * to its input size the way it was trained (SEED.md: 21 -> 24, top/left 2), run every member
 * through a Runner, crop back to (n,h,w), and average an ensemble. src/explainer/estimate.ts
 * gives it ONNX Runtime (Node) or tfjs runners; the browser viewer gives it onnxruntime-web ones.
 */
import { selectChannels } from '../models/predictor.js';
import { ModelOutputError, firstBadOutput } from '../models/predictor-head.js';
import { UserError } from '../util/errors.js';
import { conditionVectors, cropMaps, padFor, padImages } from './data.js';

export interface ExplainerCard {
  kind: 'explainer';
  variant: string;
  condition: 'none' | 'numeral' | 'onehot';
  channels?: number[];
  inputSize: number;
  numClasses: number;
  split: {
    by: 'group' | 'item';
    seed: number;
    valFraction: number;
    /** Rows of the data file held out (never trained on). */
    valIndices: number[];
    /** Conditioning class of each held-out row (conditioned explainers), in valIndices order. */
    valTargets?: number[];
    [k: string]: unknown;
  };
  /** The maps dataset it was trained on (absolute path). */
  data: string;
  classifier?: string;
  /** Number of members when an ensemble (DIR/member-<k>/). */
  ensemble?: number;
  /**
   * What the conditioning class of each map was: 'label' (dataset labels), 'predicted' (the
   * classifier's argmax), a fixed class number, or null when not conditioned.
   */
  conditionOn?: 'label' | 'predicted' | number | null;
  [k: string]: unknown;
}

export interface Explainer {
  readonly card: ExplainerCard;
  /** 'onnxruntime (N threads)' or 'tfjs-wasm' / 'tfjs-cpu'. */
  readonly engine: string;
  /**
   * images: dataset images (n,h,w,cData) NHWC; labels: the class each map is drawn for (needed
   * when conditioned). Returns maps cropped to (n,h,w); std per pixel when an ensemble.
   */
  estimate(images: Float32Array, shape: [number, number, number, number], labels?: ArrayLike<number>): Promise<Estimate>;
  /**
   * Set when the directory holds the fused graph (estimate.onnx, src/explainer/fused.ts): the
   * hash of the classifier inside it. A conditioned explainer's estimate() without labels then
   * estimates for that classifier's predicted class in one call and returns its `probs`; a
   * caller holding a classifier with this hash can skip its own classifier call.
   */
  readonly fusedClassifierHash?: string;
  dispose(): void;
}

export interface Estimate {
  /** (n,h,w): the map, or the members' mean for an ensemble. */
  maps: Float32Array;
  /** Ensembles: per-pixel standard deviation over members. */
  std?: Float32Array;
  /** Fused path only: the classifier's class probabilities (n,K) the estimate was drawn for. */
  probs?: Float32Array;
}

/** Mean and (population) standard deviation over members, per element. */
export function memberMeanStd(members: readonly Float32Array[]): { mean: Float32Array; std: Float32Array } {
  const k = members.length;
  if (k === 0) throw new Error('no members');
  const len = members[0].length;
  const mean = new Float32Array(len);
  const std = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    let s = 0;
    for (const m of members) s += m[i];
    const mu = s / k;
    let v = 0;
    for (const m of members) v += (m[i] - mu) ** 2;
    mean[i] = mu;
    std[i] = Math.sqrt(v / k);
  }
  return { mean, std };
}

/** Runs one member: padded model inputs in, padded maps (n*S*S) out. */
export interface Runner {
  run(x: Float32Array, cond: Float32Array | undefined, n: number): Promise<Float32Array>;
  dispose(): void;
}

/** The fused classifier -> explainer graph: padded inputs in, probs and each member's maps out. */
export interface FusedRunner {
  classifierHash: string;
  run(x: Float32Array, n: number): Promise<{ probs: Float32Array; maps: Float32Array[] }>;
  dispose(): void;
}

export class RunnerExplainer implements Explainer {
  private disposed = false;
  constructor(
    readonly card: ExplainerCard,
    readonly engine: string,
    private readonly runners: Runner[],
    private readonly C: number,
    private readonly nLabel: number,
    private readonly dir: string,
    private readonly fused?: FusedRunner,
  ) {
    this.fusedClassifierHash = fused?.classifierHash;
  }

  readonly fusedClassifierHash?: string;

  /** Dataset images -> the model's channels: selected by card.channels, or already selected. */
  private modelChannels(images: Float32Array, n: number, h: number, w: number, cData: number): Float32Array {
    const ch = this.card.channels;
    if (ch && ch.every((c) => c < cData)) return selectChannels(images, n, h, w, cData, ch);
    if (cData === this.C) return images; // e.g. a single-channel PNG of the channel the explainer reads
    throw new UserError(
      `${this.dir}: the explainer reads ${ch ? `data channel(s) [${ch.join(',')}]` : `${this.C} channel(s)`} but the images have ${cData} channel(s)`,
    );
  }

  async estimate(images: Float32Array, shape: [number, number, number, number], labels?: ArrayLike<number>): Promise<Estimate> {
    if (this.disposed) throw new Error('Explainer used after dispose()');
    const [n, h, w, cData] = shape;
    if (images.length !== n * h * w * cData) throw new RangeError(`estimate: ${images.length} values for images of shape (${shape.join(',')})`);
    const S = this.card.inputSize;
    if (h > S || w > S) throw new UserError(`${this.dir}: images are ${h}x${w}, larger than the explainer's ${S}x${S} input`);
    const imageSize = this.card.imageSize as number[] | undefined;
    if (Array.isArray(imageSize) && (imageSize[0] !== h || imageSize[1] !== w)) {
      throw new UserError(`${this.dir}: the explainer was trained on ${imageSize[0]}x${imageSize[1]} stamps, got ${h}x${w}`);
    }
    const viaFused = this.nLabel > 0 && !labels && this.fused;
    let cond: Float32Array | undefined;
    if (this.nLabel > 0 && !viaFused) {
      if (!labels) throw new UserError(`${this.dir}: the explainer is conditioned (${this.card.condition}) and needs the class each map is drawn for`);
      if (labels.length !== n) throw new RangeError(`estimate: ${labels.length} labels for ${n} images`);
      try {
        cond = conditionVectors(labels, this.card.condition, this.card.numClasses);
      } catch (err) {
        throw new UserError(`${this.dir}: ${(err as Error).message}`);
      }
    }
    if (n === 0) {
      return { maps: new Float32Array(0), ...(this.runners.length > 1 ? { std: new Float32Array(0) } : {}), ...(viaFused ? { probs: new Float32Array(0) } : {}) };
    }
    const pad = padFor(h, w, S);
    const x = padImages(this.modelChannels(images, n, h, w, cData), n, h, w, this.C, pad);
    let outs: Float32Array[] = [];
    let probs: Float32Array | undefined;
    if (viaFused) {
      const r = await this.fused!.run(x, n);
      probs = r.probs;
      outs = r.maps.map((m) => cropMaps(m, n, S, S, pad));
    } else {
      for (const r of this.runners) outs.push(cropMaps(await r.run(x, cond, n), n, S, S, pad));
    }
    for (const maps of outs) {
      const bad = firstBadOutput(maps, 'logits');
      if (bad >= 0) throw new ModelOutputError(`${this.dir}: the explainer gave ${maps[bad]} for stamp ${Math.floor(bad / (h * w))}: its weights are broken or the input is far outside what it was trained on`);
    }
    const extra = probs ? { probs } : {};
    if (outs.length === 1) return { maps: outs[0], ...extra };
    const { mean, std } = memberMeanStd(outs);
    return { maps: mean, std, ...extra };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.runners.forEach((r) => r.dispose());
    this.fused?.dispose();
  }
}
