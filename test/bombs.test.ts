/**
 * Issue 11 item 2: decompression and allocation bombs fail fast with a one-line error and
 * bounded memory, asserted on the peak RSS of a child process (process.resourceUsage().maxRSS).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Deflate, zipSync } from 'fflate';
import { parseNpz } from '../src/data/npz.js';
import { readHits2013Pickle } from '../src/data/hits2013-pickle.js';

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
const dist = fileURLToPath(new URL('../src/', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'occ-bombs-'));
/** Far below what the bombs would take (4+ GB), far above a node process reading a small file. */
const RSS_LIMIT_MB = 600;

function crc32(b: Uint8Array): number {
  let c = ~0;
  for (let i = 0; i < b.length; i++) {
    c ^= b[i];
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A valid greyscale PNG of side x side zeros: a few hundred KB that inflate to side^2 bytes. */
function pngBomb(side: number): Uint8Array {
  const parts: Uint8Array[] = [];
  const z = new Deflate({ level: 9 }, (d) => parts.push(d));
  const row = new Uint8Array(side + 1); // filter byte 0 + zeros
  for (let y = 0; y < side; y++) z.push(row, y === side - 1);
  const idat = new Uint8Array(parts.reduce((a, p) => a + p.length, 2 + 4));
  idat.set([0x78, 0xda]); // zlib header; the adler32 at the end is left 0 (decoders inflate first)
  let off = 2;
  for (const p of parts) {
    idat.set(p, off);
    off += p.length;
  }
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, side);
  v.setUint32(4, side);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const sig = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const all = [sig, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(all.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of all) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Pickle opcodes. */
const P = { PROTO: 0x80, EMPTY_LIST: 0x5d, BINPUT: 0x71, BINGET: 0x68, APPEND: 0x61, MARK: 0x28, LIST: 0x6c, EMPTY_DICT: 0x7d, SHORT_BINUNICODE: 0x8c, SETITEM: 0x73, STOP: 0x2e };

/** A list that contains itself (finishing it used to recurse forever). */
function cyclicPickle(): Uint8Array {
  return Uint8Array.from([P.PROTO, 2, P.EMPTY_LIST, P.BINPUT, 0, P.BINGET, 0, P.APPEND, P.STOP]);
}

/** {'images': L} with L = [L', L'] nested `depth` times: 2^depth numbers from ~6*depth bytes. */
function doublingPickle(depth: number): Uint8Array {
  const b: number[] = [P.PROTO, 2, P.EMPTY_DICT, P.SHORT_BINUNICODE, 6, ...Buffer.from('images'), P.MARK, 0x4b, 1, 0x4b, 2, P.LIST, P.BINPUT, 0];
  for (let i = 0; i < depth; i++) b.push(0x30 /* POP */, P.MARK, P.BINGET, i, P.BINGET, i, P.LIST, P.BINPUT, i + 1);
  b.push(P.SETITEM, P.STOP);
  return Uint8Array.from(b);
}

const files: Record<string, string> = {};

before(() => {
  files.png = path.join(tmp, 'bomb.png');
  writeFileSync(files.png, pngBomb(20000));
  files.cyclic = path.join(tmp, 'cyclic.pkl');
  writeFileSync(files.cyclic, cyclicPickle());
  files.doubling = path.join(tmp, 'doubling.npz'); // named .npz: files starting 0x80 are pickles
  writeFileSync(files.doubling, doublingPickle(30));
});

/** Run `code` (an ES module body) in a child node; its last stdout line is the peak RSS in KB. */
function child(code: string): Promise<{ code: number | null; out: string; err: string; rssMB: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('exit', (c) => {
      const last = out.trim().split('\n').pop() ?? '';
      resolve({ code: c, out, err, rssMB: Number(last) / 1024, ms: performance.now() - t0 });
    });
  });
}

const report = 'process.stdout.write("\\n" + process.resourceUsage().maxRSS + "\\n");';

test('a 20000x20000 PNG bomb is refused on its header, by the server reader and the CLI reader, in bounded memory', async () => {
  const size = (await import('node:fs')).statSync(files.png).size;
  assert.ok(size < 1_000_000, `the bomb is small on disk (${size} bytes)`);
  const viaServer = await child(
    `import { readFileSync } from 'node:fs'; import { stampFromPng } from ${JSON.stringify(path.join(dist, 'serve/stamp.js'))};
     try { stampFromPng(readFileSync(${JSON.stringify(files.png)}), { h: 21, w: 21 }); console.log('decoded'); } catch (e) { console.log(e.statusCode + ' ' + e.message); }
     ${report}`,
  );
  assert.match(viaServer.out, /^422 the PNG is a 20000x20000 PNG .*takes 21x21 stamps \(not decoded\)/m, viaServer.out + viaServer.err);
  assert.ok(viaServer.rssMB < RSS_LIMIT_MB, `server reader peak RSS ${viaServer.rssMB.toFixed(0)} MB`);
  // Without a model size to compare with, the pixel bound refuses it.
  const viaCli = await child(
    `import { readStampFile } from ${JSON.stringify(path.join(dist, 'data/stamp-file.js'))};
     try { await readStampFile(${JSON.stringify(files.png)}); console.log('decoded'); } catch (e) { console.log(e.message); }
     ${report}`,
  );
  assert.match(viaCli.out, /bomb\.png: is a 20000x20000 PNG: more than the \d+ pixels allowed \(not decoded\)/, viaCli.out + viaCli.err);
  assert.ok(viaCli.rssMB < RSS_LIMIT_MB, `CLI reader peak RSS ${viaCli.rssMB.toFixed(0)} MB`);
});

test('pickle bombs (a self-containing list; 2^30 numbers from 200 bytes, named .npz) fail with one line, bounded memory', async () => {
  assert.throws(() => readHits2013Pickle(cyclicPickle()), /contains itself/);
  assert.throws(() => readHits2013Pickle(doublingPickle(30)), /expands to far more than its \d+ bytes/);
  // A small doubling is an honest nested list and still reads.
  const ok = readHits2013Pickle(doublingPickle(3)).get('images')!;
  assert.deepEqual(ok.shape, [2, 2, 2, 2]);
  for (const f of [files.cyclic, files.doubling]) {
    // The CLI itself in the child process (argv set, bin imported): its own peak RSS.
    const r = await child(
      `process.argv = [process.argv[0], ${JSON.stringify(bin)}, 'dataset', 'import', ${JSON.stringify(f)}, '--out', ${JSON.stringify(f + '.out.npz')}];
       process.on('exit', () => process.stdout.write("\\n" + process.resourceUsage().maxRSS + "\\n"));
       await import(${JSON.stringify(bin)});`,
    );
    assert.equal(r.code, 2, r.err);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.ok(r.err.includes(path.basename(f)), r.err);
    assert.ok(r.rssMB < RSS_LIMIT_MB, `occmap dataset import ${path.basename(f)}: peak RSS ${r.rssMB.toFixed(0)} MB`);
  }
  const inProcess = await child(
    `import { readDataset } from ${JSON.stringify(path.join(dist, 'data/dataset.js'))};
     try { await readDataset(${JSON.stringify(files.doubling)}); console.log('read'); } catch (e) { console.log(e.message); }
     ${report}`,
  );
  assert.match(inProcess.out, /doubling\.npz: the pickle expands to far more than its \d+ bytes/, inProcess.out + inProcess.err);
  assert.ok(inProcess.rssMB < RSS_LIMIT_MB, `readDataset peak RSS ${inProcess.rssMB.toFixed(0)} MB`);
});

test('an .npz member that claims more than deflate can produce is refused before inflating', () => {
  const zip = zipSync({ 'images.npy': [new Uint8Array(1000), { level: 9 }] });
  // Patch the uncompressed size in the local header (offset 22) and the central directory.
  const v = new DataView(zip.buffer);
  v.setUint32(22, 0xfffffff0, true);
  const cd = zip.findIndex((_, i) => i + 4 <= zip.length && v.getUint32(i, true) === 0x02014b50);
  v.setUint32(cd + 24, 0xfffffff0, true);
  assert.throws(() => parseNpz(zip), /claims \d+ bytes from \d+ stored: a malformed or malicious archive/);
});
