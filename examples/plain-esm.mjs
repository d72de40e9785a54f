// occmap from plain JavaScript (ESM): a baseline map and the metrics against exact maps.
// Run: node plain-esm.mjs maps.npz [snr-channel]   (HiTS datasets: channel 3 is the SNR difference)
import { MeanMap, SnrSaliency, compareMaps, readDataset } from 'occmap';

const ds = await readDataset(process.argv[2]);
const [n, h, w] = ds.shape;
const exact = { data: ds.maps, shape: [n, h, w], score: ds.meta.occlusion.score, normalize: ds.meta.occlusion.normalize };
const images = { data: ds.images, shape: ds.shape };

const mean = await MeanMap.fromDataset(ds).attribute(images, { target: 0 });
const snr = await new SnrSaliency({ channel: Number(process.argv[3] ?? 3), score: exact.score }).attribute(images, { target: 0 });
console.log('mean map  ', JSON.stringify(compareMaps(mean, exact).mean));
console.log('|SNR|     ', JSON.stringify(compareMaps(snr, exact).mean));
