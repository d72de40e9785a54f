/**
 * The trained explainer as an attribution method: `await Explainer.load(dir)`, then
 * `attribute(images, { target })`: one inference per map instead of one per patch position.
 * Maps come in the units and orientation of the exact maps it was trained on (card.json's
 * occlusion parameters), so they compare directly with `Occlusion` maps made with
 * `explainer.occlusion` (see compareMaps).
 *
 * Conditioned explainers draw the map for a class: a fixed target, one per image, or
 * 'predicted', which needs the classifier (`Explainer.load(dir, { model })`). When a
 * classifier is given, every result also carries its probabilities.
 */
import type { ImagesInput } from '../data/images.js';
import { toImageBatch } from '../data/images.js';
import {
  loadExplainer,
  occlusionParamsOf,
  type Explainer as ExplainerModel,
  type ExplainerCard,
  type LoadExplainerOptions,
} from '../explainer/estimate.js';
import { argmaxRows, type Predictor } from '../models/predictor.js';
import type { OcclusionParams } from '../occlusion/exact.js';
import { UserError } from '../util/errors.js';
import { targetsFor, type Attribution, type AttributeOptions, type AttributionMethod } from './attribution.js';

export interface ExplainerLoadOptions extends LoadExplainerOptions {
  /** The classifier: for target 'predicted' of conditioned explainers, and probabilities. */
  model?: Predictor;
}

export class Explainer implements AttributionMethod {
  readonly name = 'explainer';

  /** Wraps an explainer already loaded with loadExplainer (the CLI and server do this). */
  constructor(
    readonly estimator: ExplainerModel,
    readonly model?: Predictor,
  ) {}

  /** Load an explainer directory written by `occmap train-explainer` (or trainExplainer). */
  static async load(dir: string, opts: ExplainerLoadOptions = {}): Promise<Explainer> {
    const { model, ...load } = opts;
    return new Explainer(await loadExplainer(dir, load), model);
  }

  get card(): ExplainerCard {
    return this.estimator.card;
  }

  get engine(): string {
    return this.estimator.engine;
  }

  /** The occlusion parameters of the exact maps it was trained on: `new Occlusion(model, explainer.occlusion)`. */
  get occlusion(): Omit<OcclusionParams, 'target'> {
    const { target: _target, ...rest } = occlusionParamsOf(this.card);
    return rest;
  }

  async attribute(images: ImagesInput, opts: AttributeOptions = {}): Promise<Attribution> {
    const batch = toImageBatch(images);
    const [n, h, w] = batch.shape;
    const spec = opts.target ?? 'predicted';
    const conditioned = this.card.condition !== 'none';
    // The explainer holds this classifier in one graph: class and map in one call.
    if (conditioned && spec === 'predicted' && this.model && this.estimator.fusedClassifierHash === this.model.hash) {
      const r = await this.estimator.estimate(batch.data, batch.shape);
      if (r.probs) {
        const k = this.model.numClasses;
        opts.onProgress?.(n, n);
        const p = this.occlusion;
        const targets = argmaxRows(r.probs, n, k);
        return { data: r.maps, shape: [n, h, w], score: p.score, normalize: p.normalize, targets, probabilities: r.probs, numClasses: k, ...(r.std ? { std: r.std } : {}), method: this.name };
      }
    }
    const { targets, probabilities, numClasses } = await targetsFor(batch, spec, this.model);
    if (conditioned && !targets) {
      throw new UserError(
        `Explainer: the explainer is conditioned (${this.card.condition}) on the class each map is drawn for: give target (a class or one per image), or the classifier (Explainer.load(dir, { model })) for target 'predicted'`,
      );
    }
    if (targets && targets.some((t) => t >= this.card.numClasses)) {
      throw new UserError(`Explainer: target ${targets.find((t) => t >= this.card.numClasses)} is not a class of the ${this.card.numClasses}-class explainer`);
    }
    const r = await this.estimator.estimate(batch.data, batch.shape, conditioned ? targets : undefined);
    opts.onProgress?.(n, n);
    const p = this.occlusion;
    return {
      data: r.maps,
      shape: [n, h, w],
      score: p.score,
      normalize: p.normalize,
      ...(targets ? { targets } : {}),
      ...(probabilities ? { probabilities, numClasses } : {}),
      ...(r.std ? { std: r.std } : {}),
      method: this.name,
    };
  }

  dispose(): void {
    this.estimator.dispose();
  }
}
