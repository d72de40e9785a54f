/**
 * Exact maps of a classifier in an ONNX file, the seed's settings, for every stamp of a
 * dataset. Run: node exact-onnx.js model.onnx stamps.npz
 */
import { Occlusion, loadPredictor, readDataset } from 'occmap';

const [modelFile, dataFile] = process.argv.slice(2);
const model = await loadPredictor(modelFile);
const ds = await readDataset(dataFile);

const occlusion = new Occlusion(model); // the seed preset: patch 3, stride 1, pad 3, score 'prob'
const maps = await occlusion.attribute({ data: ds.images, shape: ds.shape }, { onProgress: (done, total) => process.stderr.write(`\r${done}/${total} maps`) });
process.stderr.write('\n');

console.log(`engine: ${model.engine}`);
console.log(`${maps.shape[0]} maps of ${maps.shape[1]}x${maps.shape[2]}, ${occlusion.inferencesPerMap(maps.shape[1], maps.shape[2])} inferences each`);
console.log(`targets: ${Array.from(maps.targets!).join(' ')}`);
model.dispose();
