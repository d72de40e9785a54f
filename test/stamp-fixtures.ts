/** Stamp files written by hand for the reader's tests (CLI, server, page). */

export /** A FITS primary HDU written by hand: 80-character cards in 2880-byte blocks, big-endian data. */
function fits(bitpix: number, axes: number[], values: number[], extra: Record<string, number> = {}): Uint8Array {
  const cards = [`SIMPLE  = ${'T'.padStart(20)}`, `BITPIX  = ${String(bitpix).padStart(20)}`, `NAXIS   = ${String(axes.length).padStart(20)}`];
  axes.forEach((a, i) => cards.push(`NAXIS${i + 1}`.padEnd(8) + `= ${String(a).padStart(20)}`));
  for (const [k, v] of Object.entries(extra)) cards.push(k.padEnd(8) + `= ${String(v).padStart(20)} / a comment`);
  cards.push('END');
  const header = cards.map((c) => c.padEnd(80)).join('');
  const hlen = Math.ceil(header.length / 2880) * 2880;
  const size = Math.abs(bitpix) / 8;
  const dlen = Math.ceil((values.length * size) / 2880) * 2880;
  const out = new Uint8Array(hlen + dlen);
  for (let i = 0; i < hlen; i++) out[i] = i < header.length ? header.charCodeAt(i) : 0x20;
  const v = new DataView(out.buffer, hlen);
  values.forEach((x, i) => {
    const o = i * size;
    if (bitpix === 8) v.setUint8(o, x);
    else if (bitpix === 16) v.setInt16(o, x);
    else if (bitpix === 32) v.setInt32(o, x);
    else if (bitpix === -32) v.setFloat32(o, x);
    else v.setFloat64(o, x);
  });
  return out;
}
