/**
 * The Avro specification's Parsing Canonical Form: the schema with names made full, every
 * attribute but type/name/fields/symbols/items/values/size stripped (doc, aliases, defaults,
 * logical types, custom attributes), keys in the spec's order, no whitespace. Fingerprints are
 * taken over this text, so two writers of the same schema agree on its identity.
 */

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);
const NAMED = new Set(['record', 'error', 'enum', 'fixed']);

export function parsingCanonicalForm(schema: unknown): string {
  return canonical(schema, '', new Set());
}

function fullName(name: string, namespace: string): string {
  return name.includes('.') || namespace === '' ? name : `${namespace}.${name}`;
}

function canonical(s: unknown, namespace: string, seen: Set<string>): string {
  if (typeof s === 'string') {
    if (PRIMITIVES.has(s)) return JSON.stringify(s);
    return JSON.stringify(fullName(s, namespace));
  }
  if (Array.isArray(s)) return `[${s.map((b) => canonical(b, namespace, seen)).join(',')}]`;
  if (s === null || typeof s !== 'object') throw new Error(`not an Avro schema: ${JSON.stringify(s)}`);
  const o = s as Record<string, unknown>;
  const type = o.type;
  if (typeof type !== 'string') return canonical(type, namespace, seen);
  if (PRIMITIVES.has(type)) return JSON.stringify(type);
  if (NAMED.has(type)) {
    const rawName = String(o.name);
    const ns = rawName.includes('.') ? rawName.slice(0, rawName.lastIndexOf('.')) : typeof o.namespace === 'string' ? o.namespace : namespace;
    const name = fullName(rawName, ns);
    if (seen.has(name)) return JSON.stringify(name);
    seen.add(name);
    const parts = [`"name":${JSON.stringify(name)}`, `"type":${JSON.stringify(type === 'error' ? 'record' : type)}`];
    if (type === 'record' || type === 'error') {
      const fields = (o.fields as Record<string, unknown>[]).map(
        (f) => `{"name":${JSON.stringify(f.name)},"type":${canonical(f.type, ns, seen)}}`,
      );
      parts.push(`"fields":[${fields.join(',')}]`);
    } else if (type === 'enum') {
      parts.push(`"symbols":${JSON.stringify(o.symbols)}`);
    } else {
      parts.push(`"size":${Number(o.size)}`);
    }
    return `{${parts.join(',')}}`;
  }
  if (type === 'array') return `{"type":"array","items":${canonical(o.items, namespace, seen)}}`;
  if (type === 'map') return `{"type":"map","values":${canonical(o.values, namespace, seen)}}`;
  // A reference to a named type written as {"type": "Name"}.
  return canonical(type, namespace, seen);
}
