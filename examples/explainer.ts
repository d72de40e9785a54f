/**
 * The trained explainer's one-pass estimates beside the exact maps, and the metrics between
 * them: the same numbers `occmap evaluate`, `occmap explain --exact` and the server report.
 * Run: node explainer.js clf/ expl/ stamps.npz
 */
import { Explainer, Occlusion, compareMaps, loadPredictor, readDataset, METRICS, type MetricName } from 'occmap';

const [classifierDir, explainerDir, dataFile] = process.argv.slice(2);
const model = await loadPredictor(classifierDir);
const explainer = await Explainer.load(explainerDir, { model });
const ds = await readDataset(dataFile);
const images = { data: ds.images, shape: ds.shape };

// The exact maps with the occlusion parameters the explainer was trained on.
const exact = await new Occlusion(model, explainer.occlusion).attribute(images);
const t0 = performance.now();
const estimate = await explainer.attribute(images, { target: 'predicted' });
const ms = (performance.now() - t0) / estimate.shape[0];

const cmp = compareMaps(estimate, exact);
console.log(`${cmp.n} maps, estimate ${ms.toFixed(2)} ms/map on ${explainer.engine}`);
for (const [name, value] of Object.entries(cmp.mean) as [MetricName, number][]) {
  console.log(`${name.padEnd(8)} ${value.toFixed(4)}  (${METRICS[name].better} is better)`);
}
explainer.dispose();
model.dispose();
