import { gunzipSync, inflateRawSync } from 'node:zlib';
import { readAvroContainer } from '../../src/archive/avro-container.js';
import { flushPartSection, flushPartToc } from '../../src/archive/flush-part.js';
import { BLOCK_SEAL_FORMAT, headerLength } from '../../src/phi/sealer.js';

/**
 * A leak check that can fail. Parts, segments and snapshots are deflated Avro containers, so a
 * plaintext value inside them is invisible to a search of the stored bytes: this scanner
 * decodes what it searches — every container block inflated, every JSON document parsed (its
 * strings unescaped), gzip and raw-deflate streams inflated — and searches the decoded content
 * for each canary in the forms a careless encoder could leave it in (UTF-8, UTF-16LE, hex,
 * base64). A hit names the object and where in it, never the value found.
 */
export interface LeakHit {
  /** The object's key or the file's path. */
  readonly object: string;
  /** Where in it: 'bytes', 'container block 3', 'json'. */
  readonly where: string;
  /** The canary's label (its prefix), not the value. */
  readonly canary: string;
  /** The form it was found in: utf8, utf16le, hex, base64. */
  readonly form: string;
}

export interface ScannedObject {
  readonly key: string;
  readonly bytes: Uint8Array;
}

const CONTAINER_MAGIC = Buffer.from('Obj\x01', 'latin1');

/** How much a scan looked at, so a caller can show it searched decoded content. */
export interface ScanStats {
  objects: number;
  /** Decoded views searched besides the raw bytes: container blocks, JSON documents, gzip streams. */
  decoded: number;
}

/** Scans objects for canaries (plain strings, e.g. 'CANARY-SSN-'); returns every hit. */
export function scanForCanaries(objects: Iterable<ScannedObject>, canaries: readonly string[], stats?: ScanStats): LeakHit[] {
  const needles = canaries.flatMap((c) => formsOf(c).map(([form, bytes]) => ({ label: labelOf(c), form, bytes })));
  const hits: LeakHit[] = [];
  for (const o of objects) {
    const views = decodedViews(o);
    if (stats) {
      stats.objects++;
      stats.decoded += views.length - 1;
    }
    for (const { where, data } of views) {
      for (const n of needles) if (data.includes(n.bytes)) hits.push({ object: o.key, where, canary: n.label, form: n.form });
    }
  }
  return hits;
}

/** Scans a text (a log) for canaries, in the same forms. */
export function scanTextForCanaries(name: string, text: string, canaries: readonly string[]): LeakHit[] {
  return scanForCanaries([{ key: name, bytes: Buffer.from(text, 'utf8') }], canaries);
}

/** One line a hit, for an assertion message: object, place, canary label and form only. */
export function describeHits(hits: readonly LeakHit[]): string {
  return hits.map((h) => `${h.object} (${h.where}): ${h.canary}… as ${h.form}`).join('\n');
}

/** Every view of an object a leak could hide in: its raw bytes, plus what decoding them gives. */
function decodedViews(o: ScannedObject): { where: string; data: Buffer }[] {
  const raw = Buffer.from(o.bytes.buffer, o.bytes.byteOffset, o.bytes.byteLength);
  const views = [{ where: 'bytes', data: raw }];
  if (raw.subarray(0, 4).equals(CONTAINER_MAGIC)) {
    // A damaged container is itself worth failing on: the scan must see every block.
    const { header, blocks } = readAvroContainer(raw, o.key);
    views.push({ where: 'container header', data: Buffer.from(JSON.stringify(header.metadata), 'utf8') });
    blocks.forEach((b, i) => {
      views.push({ where: `container block ${i}`, data: b.data });
      for (const d of blockSealBodies(b.data)) views.push({ where: `container block ${i} block seal body`, data: d });
    });
    if (header.metadata['chartlog.sections'] !== undefined) {
      // A flush part: each section is a deflated container of its own, hidden inside a block.
      flushPartToc(raw, o.key).forEach((_, i) => {
        const inner = decodedViews({ key: o.key, bytes: flushPartSection(raw, o.key, i).container });
        for (const v of inner) views.push({ where: `section ${i} ${v.where}`, data: v.data });
      });
    }
    return views;
  }
  if (raw[0] === 0x1f && raw[1] === 0x8b) {
    views.push({ where: 'gzip', data: gunzipSync(raw) });
    return views;
  }
  const json = parseJson(raw);
  if (json !== undefined) {
    views.push({ where: 'json', data: Buffer.from(stringsOf(json).join('\n'), 'utf8') });
    return views;
  }
  try {
    views.push({ where: 'raw deflate', data: inflateRawSync(raw) });
  } catch {
    // Not a deflate stream: the raw bytes are all there is.
  }
  return views;
}

/**
 * A block seal (sealed format 5) deflates its rows' PHI and then encrypts it: a writer that
 * forgot the second step would store a deflate stream inside a record, invisible to a search of
 * the block. So wherever a block seal's header can start, what follows its nonce (either length)
 * is inflated when it is a deflate stream; an encrypted body is not one.
 */
function blockSealBodies(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = data.indexOf(BLOCK_SEAL_FORMAT); at >= 0; at = data.indexOf(BLOCK_SEAL_FORMAT, at + 1)) {
    const h = headerLength(data.subarray(at));
    if (h <= 0) continue;
    for (const nonce of [24, 12]) {
      try {
        const body = inflateRawSync(data.subarray(at + h + nonce), { maxOutputLength: 64 * 1024 * 1024 });
        if (body.length > 0) out.push(body);
      } catch {
        // Not a deflate stream there (sealed, or no block seal at all).
      }
    }
  }
  return out;
}

function parseJson(raw: Buffer): unknown {
  const first = raw.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09);
  if (first !== 0x7b && first !== 0x5b && first !== 0x22) return undefined;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Every string in a JSON value, keys included, unescaped. */
function stringsOf(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(stringsOf);
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => [k, ...stringsOf(x)]);
  return [];
}

function formsOf(canary: string): [string, Buffer][] {
  const utf8 = Buffer.from(canary, 'utf8');
  const forms: [string, Buffer][] = [
    ['utf8', utf8],
    ['utf16le', Buffer.from(canary, 'utf16le')],
    ['hex', Buffer.from(utf8.toString('hex'), 'latin1')],
    ['HEX', Buffer.from(utf8.toString('hex').toUpperCase(), 'latin1')],
  ];
  // base64 of the canary at each of the three alignments it can start at in a longer value;
  // only the characters that do not depend on the neighbouring bytes are searched.
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.concat([Buffer.alloc(shift), utf8]).toString('base64');
    // Character j holds bits 6j…6j+5: it is the canary's alone when they all fall inside it.
    const stable = b64.slice(Math.ceil((shift * 4) / 3), Math.floor(((shift + utf8.length) * 4) / 3));
    if (stable.length >= 8) forms.push([`base64+${shift}`, Buffer.from(stable, 'latin1')]);
  }
  return forms;
}

function labelOf(canary: string): string {
  return canary.slice(0, Math.min(canary.length, 12));
}
