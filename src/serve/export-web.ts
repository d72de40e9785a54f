/**
 * `occmap export-web`: the viewer as a self-contained static folder (page, models, data,
 * onnxruntime-web's wasm files, occmap.json) that any static file server can host; the page
 * computes estimates and exact maps itself. Written to a temporary sibling folder and renamed
 * into place, so a failure leaves no partial site and a replaced site is never half old.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileError } from '../util/errors.js';
import { buildWebSite, type WebSiteOptions } from './site.js';

export interface ExportWebOptions extends WebSiteOptions {
  out: string;
  /** Replace an existing, non-empty output folder. */
  force?: boolean;
}

export interface ExportWebResult {
  out: string;
  files: number;
  bytes: number;
  /** Bytes by part: page (html, css, js), ort (onnxruntime-web), models, data. */
  parts: Record<'page' | 'ort' | 'models' | 'data', number>;
}

const inside = (child: string, parent: string): boolean => {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

/** Refuse an output that would overwrite or sit inside one of the inputs (or contain one). */
function checkOut(o: ExportWebOptions): string {
  const out = path.resolve(o.out);
  for (const [flag, p] of [['--classifier', o.classifier], ['--explainer', o.explainer], ['--data', o.data]] as const) {
    if (!p) continue;
    const inp = path.resolve(p);
    if (inside(out, inp) || inside(inp, out)) throw fileError(o.out, `overlaps the input ${flag} ${p}: choose another --out folder`);
  }
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw fileError(o.out, 'exists and is not a folder');
    if (readdirSync(out).length > 0 && !o.force) throw fileError(o.out, 'exists and is not empty: use --force to replace it');
  }
  const parent = path.dirname(out);
  if (!existsSync(parent)) throw fileError(o.out, `its parent folder ${parent} does not exist`);
  return out;
}

export async function exportWeb(o: ExportWebOptions): Promise<ExportWebResult> {
  const out = checkOut(o);
  const site = await buildWebSite({ ...o, server: false });
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.${process.pid}.tmp`);
  const old = path.join(path.dirname(out), `.${path.basename(out)}.${process.pid}.old`);
  const parts = { page: 0, ort: 0, models: 0, data: 0 };
  let bytes = 0;
  rmSync(tmp, { recursive: true, force: true });
  try {
    for (const f of site.files) {
      const dst = path.join(tmp, f.url);
      mkdirSync(path.dirname(dst), { recursive: true });
      try {
        copyFileSync(f.file, dst);
      } catch (err) {
        throw fileError(f.file, `cannot copy to ${o.out} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      const size = statSync(dst).size;
      bytes += size;
      const part = f.url.startsWith('ort/') ? 'ort' : f.url.startsWith('models/') ? 'models' : f.url.startsWith('data/') ? 'data' : 'page';
      parts[part] += size;
    }
    const manifest = JSON.stringify(site.manifest, null, 1);
    writeFileSync(path.join(tmp, 'occmap.json'), manifest);
    bytes += Buffer.byteLength(manifest);
    parts.page += Buffer.byteLength(manifest);
    if (existsSync(out)) renameSync(out, old);
    renameSync(tmp, out);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(old) && !existsSync(out)) renameSync(old, out);
    if ((err as Error).name === 'UserError') throw err;
    throw fileError(o.out, `cannot write (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  rmSync(old, { recursive: true, force: true });
  return { out, files: site.files.length + 1, bytes, parts };
}
